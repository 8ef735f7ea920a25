//! Reading the tokenizer's `tokenizer.ggml.*` keys from a GGUF file.

use super::{SpecialTokenIds, Tokenizer, TokenizerError, Vocabulary};
use crate::gguf::{Gguf, GgufError};
use alloc::string::ToString;
use alloc::vec::Vec;

fn metadata(error: GgufError) -> TokenizerError {
    TokenizerError::Metadata(error.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF model describes.
    pub fn from_gguf(gguf: &Gguf<'_>) -> Result<Self, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model").map_err(metadata)?;
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(metadata)?;
        let token_types = if gguf.contains("tokenizer.ggml.token_type") {
            gguf.get_i32_array("tokenizer.ggml.token_type")
                .map_err(metadata)?
        } else {
            Vec::new()
        };
        let merges = if gguf.contains("tokenizer.ggml.merges") {
            gguf.get_str_array("tokenizer.ggml.merges")
                .map_err(metadata)?
        } else {
            Vec::new()
        };
        let pre_tokenizer = gguf
            .opt_str("tokenizer.ggml.pre")
            .map_err(metadata)?
            .unwrap_or("");
        let id = |key: &str| gguf.opt_u32(key).map_err(metadata);
        let special = SpecialTokenIds {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unknown: id("tokenizer.ggml.unknown_token_id")?,
            padding: id("tokenizer.ggml.padding_token_id")?,
            separator: id("tokenizer.ggml.seperator_token_id")?,
        };
        Tokenizer::new(&Vocabulary {
            model,
            tokens: &tokens,
            token_types: &token_types,
            merges: &merges,
            pre_tokenizer,
            special,
            add_bos: gguf
                .opt_bool("tokenizer.ggml.add_bos_token")
                .map_err(metadata)?,
            add_eos: gguf
                .opt_bool("tokenizer.ggml.add_eos_token")
                .map_err(metadata)?,
        })
    }
}

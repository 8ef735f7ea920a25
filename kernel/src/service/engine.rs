//! The loaded model as the service uses it: engine, tokenizer and chat template built from a
//! verified plaintext, and one [`Generation`] per busy slot that turns the tokens the batcher
//! samples for a request into answer text — the prompt is rendered with the model's chat template and tokenized
//! here, inside the enclave, and the answer is detokenized here (streaming decoder), so only
//! text ever leaves, encrypted.
//!
//! Decoding is greedy: the request format (docs/protocol.md §3) carries no sampling settings,
//! and greedy answers are reproducible, so a user can compare them with `ward generate`.

use super::load::{LoadError, Plaintext};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ward_attestation::protocol::{ModelInfo, Request};
use ward_inference::batcher::{Batcher, BatcherConfig};
use ward_inference::chat::{ChatMessage, ChatTemplate};
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::tokenizer::{StreamDecoder, Tokenizer};
use zeroize::Zeroizing;

/// Tokens processed per forward step while reading a prompt (as `ward generate` does, so the
/// arithmetic and hence the greedy answer are the same).
pub const PROMPT_BATCH: usize = 512;

/// A verified model ready to serve.
pub struct LoadedModel {
    /// Id, version and digest from the verified sealed header.
    pub info: ModelInfo,
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

fn model_error(part: &'static str) -> impl Fn(&dyn core::fmt::Display) -> LoadError {
    move |error| LoadError::Model {
        part,
        message: error.to_string(),
    }
}

impl LoadedModel {
    /// Builds the engine from a verified plaintext. The engine keeps its own (packed) copy of
    /// the weights, so the plaintext can be wiped afterwards.
    pub fn build(plaintext: &Plaintext, kernels: Kernels) -> Result<Self, LoadError> {
        let gguf = Gguf::parse(&plaintext.bytes).map_err(|e| model_error("GGUF")(&e))?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|e| model_error("tokenizer")(&e))?;
        let template =
            ChatTemplate::from_gguf(&gguf).map_err(|e| model_error("chat template")(&e))?;
        let model = Model::from_gguf(&gguf, kernels).map_err(|e| model_error("model")(&e))?;
        let verified = &plaintext.model;
        Ok(Self {
            info: ModelInfo {
                id: verified.model_id.as_str().into(),
                version: verified.model_version,
                sha384: verified.plaintext_sha384,
            },
            model,
            tokenizer,
            template,
        })
    }

    /// Positions per slot: `wanted`, within the model's context length.
    pub fn slot_context(&self, wanted: usize) -> usize {
        wanted.min(self.model.config().context_length).max(2)
    }

    /// The slots' batcher: every slot's context and the batch scratch, allocated once.
    pub fn new_batcher(&self, config: BatcherConfig) -> Batcher {
        Batcher::new(&self.model, config)
    }

    /// The engine, for the batcher's steps.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Renders the chat template around the request and tokenizes it. The rendered text is
    /// wiped once tokenized.
    pub fn prompt_tokens(&self, request: &Request) -> Result<Zeroizing<Vec<u32>>, String> {
        let user = ChatMessage::user(&request.user);
        let system = ChatMessage::system(&request.system);
        let messages: &[ChatMessage<'_>] = if request.system.is_empty() {
            &[user]
        } else {
            &[system, user]
        };
        let text = Zeroizing::new(
            self.template
                .render(messages, true)
                .map_err(|e| e.to_string())?,
        );
        Ok(Zeroizing::new(self.tokenizer.encode(&text, true)))
    }
}

/// What one step of a generation produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// The text of each token completed in this step (one entry per token; a token whose bytes
    /// end mid-character has its text carried to the next).
    pub tokens: Vec<Zeroizing<String>>,
    /// The answer is complete.
    pub done: bool,
    /// Prompt tokens read before this step's token (set with the first token only).
    pub prompt_tokens: usize,
}

/// One request being answered in one slot: stops and streaming text for the tokens the
/// batcher samples for it.
pub struct Generation {
    prompt_len: usize,
    produced: u32,
    max_new: u32,
    decoder: StreamDecoder<'static>,
    /// Text of the latest token, sent with the next step so that the text the decoder still
    /// holds at the end of the answer goes out with a real token (exact token counts).
    held: Option<Zeroizing<String>>,
}

impl Generation {
    /// A generation for a prompt of `prompt_len` tokens (already checked to fit `capacity`),
    /// at most `max_new` tokens.
    pub fn new(
        model: &'static LoadedModel,
        prompt_len: usize,
        max_new: u32,
        capacity: usize,
    ) -> Self {
        let room = capacity.saturating_sub(prompt_len);
        Self {
            prompt_len,
            produced: 0,
            max_new: max_new.min(u32::try_from(room).unwrap_or(u32::MAX)),
            decoder: model.tokenizer.decoder(),
            held: None,
        }
    }

    /// Tokens this generation may produce (the request's bound, within the slot's room).
    pub fn max_new(&self) -> usize {
        self.max_new as usize
    }

    /// Takes the next sampled token: its text (held back one token), and whether the answer is
    /// complete (end of generation, or `max_new` tokens made).
    pub fn accept(&mut self, model: &'static LoadedModel, id: u32) -> StepOutput {
        let mut output = StepOutput {
            prompt_tokens: if self.produced == 0 {
                self.prompt_len
            } else {
                0
            },
            ..StepOutput::default()
        };
        if self.max_new == 0 {
            output.done = true;
            return output;
        }
        if model.tokenizer.is_end_of_generation(id) {
            let mut last = self.held.take().unwrap_or_default();
            last.push_str(self.decoder.finish());
            if self.produced > 0 {
                output.tokens.push(last);
            }
            output.done = true;
            return output;
        }
        self.produced += 1;
        let text = Zeroizing::new(String::from(self.decoder.push(id).unwrap_or("")));
        if let Some(previous) = self.held.replace(text) {
            output.tokens.push(previous);
        }
        if self.produced >= self.max_new {
            let mut last = self.held.take().unwrap_or_default();
            last.push_str(self.decoder.finish());
            output.tokens.push(last);
            output.done = true;
        }
        output
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        // The decoder's pending bytes are at most one character of the answer.
        let _ = self.decoder.finish();
    }
}

//! The tokenizer on the default model against llama.cpp's reference token ids, plus streaming
//! detokenization round trips.

mod support;

use std::sync::OnceLock;
use ward_inference::chat::{ChatMessage, ChatTemplate};
use ward_inference::gguf::Gguf;
use ward_inference::sampler::{Rng, StopCheck, StopStrings};
use ward_inference::tokenizer::{PreTokenizer, TokenType, Tokenizer};

use support::{llama_cpp_reference as reference, token_ids as ids};

/// The default model's bytes, read once for all tests.
fn model() -> &'static [u8] {
    static MODEL: OnceLock<Vec<u8>> = OnceLock::new();
    MODEL.get_or_init(|| {
        std::fs::read(support::default_model_path()).expect("read the default model")
    })
}

/// The default model's tokenizer, built once for all tests.
fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let gguf = Gguf::parse(model()).expect("parse the default model");
        Tokenizer::from_gguf(&gguf).expect("build the tokenizer")
    })
}

#[test]
fn default_model_metadata() {
    let t = tokenizer();
    assert_eq!(t.n_tokens(), 49152);
    assert_eq!(t.pre_tokenizer(), PreTokenizer::DigitsThenGpt2);
    assert!(!t.adds_bos(), "SmolLM2 sets add_bos_token = false");
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_id("<|im_end|>"), Some(2));
    assert_eq!(t.token_type(1), Some(TokenType::Control));
    // EOS (<|im_end|>), <|endoftext|>, and <reponame> (llama.cpp's FIM-repo guess) end generation.
    assert_eq!(t.end_of_generation_tokens(), &[0, 2, 4]);
    assert!(t.is_end_of_generation(2));
    assert!(!t.is_end_of_generation(1));
}

#[test]
fn every_reference_text_tokenizes_like_llama_cpp() {
    let reference = reference();
    let cases = reference["tokenize"].as_array().expect("tokenize entries");
    assert!(!cases.is_empty());
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let expected = ids(&case["ids"]);
        let got = tokenizer().encode(text, true);
        if got != expected {
            mismatches.push(format!(
                "{text:?}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_rendered_chat_prompt_tokenizes_like_llama_cpp() {
    let reference = reference();
    let cases = reference["chat"].as_array().expect("chat entries");
    assert!(!cases.is_empty());
    for case in cases {
        let rendered = case["rendered"].as_str().expect("rendered");
        assert_eq!(
            tokenizer().encode(rendered, true),
            ids(&case["prompt_ids"]),
            "{rendered:?}"
        );
    }
}

#[test]
fn chat_template_renders_the_reference_prompts() {
    let gguf = Gguf::parse(model()).expect("parse the default model");
    let template = ChatTemplate::from_gguf(&gguf).expect("SmolLM2's template is recognized");
    let reference = reference();
    let cases = reference["chat"].as_array().expect("chat entries");
    for case in cases {
        let user = case["user"].as_str().expect("user");
        let rendered = template
            .render(&[ChatMessage::user(user)], true)
            .expect("rendered");
        assert_eq!(rendered, case["rendered"].as_str().expect("rendered"));
        assert_eq!(
            tokenizer().encode(&rendered, true),
            ids(&case["prompt_ids"])
        );
    }
}

#[test]
fn stop_strings_on_streamed_reference_output() {
    // Greedy reference output decoded token by token, stopped at a string that spans tokens.
    let reference = reference();
    let generated = ids(&reference["chat"][0]["greedy_ids_64"]);
    let full = tokenizer().decode(&generated, false);
    let stop = &full[5..9];
    let mut decoder = tokenizer().decoder();
    let mut stops = StopStrings::new(&[stop]);
    let mut shown = String::new();
    for &id in &generated {
        let Some(text) = decoder.push(id) else {
            continue;
        };
        match stops.push(text) {
            StopCheck::Continue(text) => shown.push_str(text),
            StopCheck::Stop(text) => {
                shown.push_str(text);
                break;
            }
        }
    }
    assert!(stops.stopped());
    assert_eq!(shown, &full[..full.find(stop).expect("stop occurs")]);
}

#[test]
fn reference_texts_decode_back_exactly() {
    let reference = reference();
    for case in reference["tokenize"].as_array().expect("tokenize entries") {
        let text = case["text"].as_str().expect("text");
        let tokens = ids(&case["ids"]);
        assert_eq!(tokenizer().decode(&tokens, true), text);
    }
}

#[test]
fn special_tokens_only_when_asked() {
    let t = tokenizer();
    let text = "<|im_start|>user";
    let parsed = t.encode(text, true);
    assert_eq!(parsed[0], 1);
    let literal = t.encode(text, false);
    assert!(!literal.contains(&1), "{literal:?}");
    assert_eq!(t.decode(&literal, false), text, "spelled out as plain text");
    // Control tokens are hidden in decoded text unless rendered.
    assert_eq!(t.decode(&parsed, false), "user");
    assert_eq!(t.decode(&parsed, true), text);
}

/// Streams `tokens` through a decoder, checking that every chunk is whole UTF-8 and that the
/// chunks add up to `expected`; returns how many pushes produced nothing (held-back bytes).
fn stream(tokens: &[u32], expected: &str) -> usize {
    let mut decoder = tokenizer().decoder();
    let mut out = String::new();
    let mut silent = 0;
    for &id in tokens {
        match decoder.push(id) {
            Some(chunk) => out.push_str(chunk),
            None => silent += 1,
        }
    }
    assert!(!decoder.has_pending());
    out.push_str(decoder.finish());
    assert_eq!(out, expected);
    silent
}

#[test]
fn streaming_round_trip_with_characters_split_across_tokens() {
    let t = tokenizer();
    for text in [
        "emoji 🙂👍🏽 done",
        "日本語のテキスト",
        "Ünïcödé façade — naïve café",
        "plain ascii, nothing split",
        "中文、한국어、ελληνικά и русский",
    ] {
        let tokens = t.encode(text, true);
        stream(&tokens, text);
    }
    // llama.cpp splits "🙂" (F0 9F 99 82) across tokens 47526 and 10813: the first push must
    // hold its bytes back rather than emit a broken character.
    let tokens = t.encode("🙂", true);
    assert!(tokens.len() > 1, "{tokens:?}");
    assert!(stream(&tokens, "🙂") >= 1);
}

#[test]
fn streaming_replaces_bytes_that_never_complete() {
    let t = tokenizer();
    // The first token of "🙂" alone: an unfinished character, flushed as U+FFFD by finish().
    let first = t.encode("🙂", true)[0];
    let mut decoder = t.decoder();
    assert_eq!(decoder.push(first), None);
    assert!(decoder.has_pending());
    assert_eq!(decoder.finish(), "\u{FFFD}");
    // Reusable afterwards.
    assert_eq!(decoder.push(t.encode("a", true)[0]), Some("a"));
}

/// Random text from pieces that exercise every pre-tokenizer branch.
fn random_text(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "word",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\u{A0}",
        "\u{3000}",
        "'s",
        "'LL",
        "'",
        "1",
        "2024",
        "\u{0663}",
        "½",
        ".",
        ",",
        "!?",
        "—",
        "(",
        "$",
        "+=",
        "é",
        "e\u{0301}",
        "日本",
        "한국",
        "🙂",
        "👍🏽",
        "\u{10FFFF}",
        "\u{FFFD}",
        "<|im_start|>",
        "<|im_end|>",
        "<|im_",
        "<reponame>",
        "\u{0}",
        "\u{7F}",
        "\u{85}",
        "\u{200B}",
    ];
    let len = (rng.next_u64() % 12) as usize;
    (0..len)
        .map(|_| PIECES[(rng.next_u64() % PIECES.len() as u64) as usize])
        .collect()
}

#[test]
fn random_text_round_trips_without_panics() {
    let t = tokenizer();
    let mut rng = Rng::new(2026);
    for _ in 0..3000 {
        let text = random_text(&mut rng);
        for parse_special in [true, false] {
            let tokens = t.encode(&text, parse_special);
            assert!(tokens.iter().all(|&id| (id as usize) < t.n_tokens()));
            assert_eq!(
                t.decode(&tokens, true),
                text,
                "parse_special={parse_special}"
            );
            stream(&tokens, &t.decode(&tokens, false));
        }
    }
}

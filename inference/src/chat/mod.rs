//! Chat prompts: the model's `tokenizer.chat_template`, rendered by dedicated code.
//!
//! Templates are Jinja programs, but we do not run Jinja: we recognize the template family from
//! its characteristic markers and render it with code written for that family. A template we do
//! not recognize gives [`ChatError::UnsupportedTemplate`] instead of a guess.
//!
//! Supported: **ChatML** (`<|im_start|>role\ncontent<|im_end|>\n`, generation prompt
//! `<|im_start|>assistant\n`), including the variant SmolLM2 and Qwen2 ship that inserts a default
//! system message when the conversation does not start with one; that message's text is read
//! from the template itself.
//!
//! ```ignore
//! let template = ChatTemplate::from_gguf(&gguf)?;
//! let prompt = template.render(&[ChatMessage::user("What is the capital of France?")], true)?;
//! let ids = tokenizer.encode(&prompt, true); // parse_special: the markers are special tokens
//! ```

use crate::gguf::Gguf;
use alloc::string::{String, ToString};
use core::fmt;

/// One message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    /// `system`, `user` or `assistant` (passed through as the template does).
    pub role: &'a str,
    pub content: &'a str,
}

impl<'a> ChatMessage<'a> {
    pub fn system(content: &'a str) -> Self {
        Self {
            role: "system",
            content,
        }
    }

    pub fn user(content: &'a str) -> Self {
        Self {
            role: "user",
            content,
        }
    }

    pub fn assistant(content: &'a str) -> Self {
        Self {
            role: "assistant",
            content,
        }
    }
}

/// Why a chat prompt could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    /// The model has no `tokenizer.chat_template`.
    MissingTemplate,
    /// The metadata key exists but could not be read (the GGUF reader's message).
    Metadata(String),
    /// A template this module does not render; holds its first characters for the message.
    UnsupportedTemplate(String),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTemplate => write!(f, "the model has no tokenizer.chat_template"),
            Self::Metadata(msg) => write!(f, "tokenizer.chat_template: {msg}"),
            Self::UnsupportedTemplate(start) => {
                write!(f, "unsupported chat template (starts with {start:?})")
            }
        }
    }
}

impl core::error::Error for ChatError {}

/// A recognized chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML. `default_system`: the system message inserted when the first message is not a
    /// system message (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging
    /// Face").
    ChatMl { default_system: Option<String> },
}

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

/// Template features that change the output in ways the ChatML renderer does not reproduce.
const UNSUPPORTED_FEATURES: &[&str] = &[
    "tools",
    "tool_call",
    "reasoning_content",
    "enable_thinking",
    "namespace(",
    "raise_exception",
];

impl ChatTemplate {
    /// The template of a GGUF model (`tokenizer.chat_template`).
    pub fn from_gguf(gguf: &Gguf<'_>) -> Result<Self, ChatError> {
        match gguf.opt_str("tokenizer.chat_template") {
            Ok(Some(source)) => Self::recognize(source),
            Ok(None) => Err(ChatError::MissingTemplate),
            Err(e) => Err(ChatError::Metadata(e.to_string())),
        }
    }

    /// Recognizes a template from its Jinja source.
    pub fn recognize(source: &str) -> Result<Self, ChatError> {
        let unsupported = || ChatError::UnsupportedTemplate(source.chars().take(60).collect());
        let is_chatml = source.contains(IM_START)
            && source.contains(IM_END)
            && contains_any(
                source,
                &["message['role']", "message[\"role\"]", "message.role"],
            )
            && contains_any(
                source,
                &[
                    "message['content']",
                    "message[\"content\"]",
                    "message.content",
                ],
            )
            && source.contains("add_generation_prompt")
            && source.contains("<|im_start|>assistant");
        if !is_chatml || contains_any(source, UNSUPPORTED_FEATURES) {
            return Err(unsupported());
        }
        let default_system = if contains_any(
            source,
            &[
                "messages[0]['role'] != 'system'",
                "messages[0][\"role\"] != \"system\"",
                "messages[0].role != 'system'",
            ],
        ) {
            Some(default_system_text(source).ok_or_else(unsupported)?)
        } else {
            None
        };
        Ok(Self::ChatMl { default_system })
    }

    /// Renders the conversation; `add_generation_prompt` appends the assistant turn's opening.
    pub fn render(
        &self,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let Self::ChatMl { default_system } = self;
        let mut out = String::new();
        if let (Some(first), Some(system)) = (messages.first(), default_system)
            && first.role != "system"
        {
            push_turn(&mut out, "system", system);
        }
        for message in messages {
            push_turn(&mut out, message.role, message.content);
        }
        if add_generation_prompt {
            out.push_str(IM_START);
            out.push_str("assistant\n");
        }
        Ok(out)
    }
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str(IM_START);
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str(IM_END);
    out.push('\n');
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|needle| haystack.contains(needle))
}

/// The default system message: the literal between `<|im_start|>system` + newline (written as
/// a real line break or as `\n`) and the next `<|im_end|>`, with Jinja string escapes undone.
fn default_system_text(source: &str) -> Option<String> {
    let marker = "<|im_start|>system";
    let after = &source[source.find(marker)? + marker.len()..];
    let body = after
        .strip_prefix('\n')
        .or_else(|| after.strip_prefix("\\n"))?;
    let literal = &body[..body.find(IM_END)?];
    let mut text = String::with_capacity(literal.len());
    let mut chars = literal.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next()? {
            'n' => text.push('\n'),
            't' => text.push('\t'),
            other @ ('\\' | '\'' | '"') => text.push(other),
            _ => return None,
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// SmolLM2-135M-Instruct's template, as its GGUF ships it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Plain ChatML with escaped newlines and no default system message.
    const PLAIN_CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn smollm2_inserts_its_default_system_message() {
        let template = ChatTemplate::recognize(SMOLLM2).expect("recognized");
        let prompt = template
            .render(&[ChatMessage::user("Hi")], true)
            .expect("rendered");
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn an_explicit_system_message_replaces_the_default() {
        let template = ChatTemplate::recognize(SMOLLM2).expect("recognized");
        let messages = vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello."),
        ];
        assert_eq!(
            template.render(&messages, false).expect("rendered"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello.<|im_end|>\n"
        );
    }

    #[test]
    fn plain_chatml() {
        let template = ChatTemplate::recognize(PLAIN_CHATML).expect("recognized");
        assert_eq!(
            template,
            ChatTemplate::ChatMl {
                default_system: None
            }
        );
        assert_eq!(
            template
                .render(&[ChatMessage::user("Hi")], true)
                .expect("rendered"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            template.render(&[], true).expect("rendered"),
            "<|im_start|>assistant\n"
        );
    }

    #[test]
    fn escaped_default_system_message() {
        let source = PLAIN_CHATML.replace(
            "{% for message in messages %}",
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.\\nIt\\'s fine.<|im_end|>\\n' }}{% endif %}",
        );
        let template = ChatTemplate::recognize(&source).expect("recognized");
        assert_eq!(
            template,
            ChatTemplate::ChatMl {
                default_system: Some("You are a helpful assistant.\nIt's fine.".into())
            }
        );
    }

    #[test]
    fn unknown_templates_are_refused() {
        let llama3 = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}";
        assert!(matches!(
            ChatTemplate::recognize(llama3),
            Err(ChatError::UnsupportedTemplate(_))
        ));
        let with_tools =
            SMOLLM2.replace("{% for message", "{% if tools %}x{% endif %}{% for message");
        assert!(matches!(
            ChatTemplate::recognize(&with_tools),
            Err(ChatError::UnsupportedTemplate(_))
        ));
    }
}

//! Stop strings, checked on the decoded text as it streams out, across token boundaries.
//!
//! Text that could still be the start of a stop string is held back until it is known not to
//! be one, so the caller never prints part of a stop string.

use alloc::string::String;
use alloc::vec::Vec;

/// What to do after a piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCheck<'a> {
    /// Keep generating; this text is safe to show (it may be empty).
    Continue(&'a str),
    /// A stop string was found: show this text (everything before it) and stop.
    Stop(&'a str),
}

/// Watches streamed text for any of a set of stop strings.
#[derive(Debug, Clone)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text not yet released: it may begin a stop string.
    held: String,
    /// Text released by the last call.
    released: String,
    stopped: bool,
}

impl StopStrings {
    /// Watches for these strings (empty ones are ignored).
    pub fn new(stops: &[&str]) -> Self {
        Self {
            stops: stops
                .iter()
                .filter(|s| !s.is_empty())
                .map(|&s| s.into())
                .collect(),
            held: String::new(),
            released: String::new(),
            stopped: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Whether a stop string has been seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds the next piece of decoded text. After a `Stop`, further text is ignored.
    pub fn push(&mut self, text: &str) -> StopCheck<'_> {
        self.released.clear();
        if self.stopped {
            return StopCheck::Stop(&self.released);
        }
        self.held.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = earliest {
            self.released.push_str(&self.held[..at]);
            self.held.clear();
            self.stopped = true;
            return StopCheck::Stop(&self.released);
        }
        // Release all but the longest tail that is a proper prefix of some stop string.
        let keep_from = (0..=self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.held[i..];
                !tail.is_empty() && self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        self.released.push_str(&self.held[..keep_from]);
        self.held.drain(..keep_from);
        StopCheck::Continue(&self.released)
    }

    /// Ends the stream without a stop: releases any held-back text.
    pub fn finish(&mut self) -> &str {
        self.released.clear();
        if !self.stopped {
            self.released.push_str(&self.held);
        }
        self.held.clear();
        &self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds pieces; returns the shown text and whether it stopped.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut watcher = StopStrings::new(stops);
        let mut shown = String::new();
        for piece in pieces {
            match watcher.push(piece) {
                StopCheck::Continue(text) => shown.push_str(text),
                StopCheck::Stop(text) => {
                    shown.push_str(text);
                    return (shown, true);
                }
            }
        }
        shown.push_str(watcher.finish());
        (shown, false)
    }

    #[test]
    fn stop_string_split_across_pieces() {
        assert_eq!(
            run(&["\nUser:"], &["Hello", " there\nUs", "er: hi"]),
            ("Hello there".into(), true)
        );
        assert_eq!(run(&["STOP"], &["aST", "O", "P!"]), ("a".into(), true));
    }

    #[test]
    fn held_text_is_released_when_it_is_not_a_stop() {
        let mut watcher = StopStrings::new(&["abc"]);
        assert_eq!(watcher.push("xab"), StopCheck::Continue("x"));
        assert_eq!(watcher.push("d"), StopCheck::Continue("abd"));
        assert_eq!(run(&["abc"], &["xa", "b"]), ("xab".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_and_unicode() {
        assert_eq!(
            run(&["world", "lo"], &["hello world"]),
            ("hel".into(), true)
        );
        assert_eq!(run(&["🙂!"], &["a🙂", "b🙂", "!"]), ("a🙂b".into(), true));
        assert_eq!(run(&[], &["anything"]), ("anything".into(), false));
    }

    #[test]
    fn ignores_text_after_a_stop() {
        let mut watcher = StopStrings::new(&["x"]);
        assert_eq!(watcher.push("ax"), StopCheck::Stop("a"));
        assert!(watcher.stopped());
        assert_eq!(watcher.push("more"), StopCheck::Stop(""));
        assert_eq!(watcher.finish(), "");
    }
}

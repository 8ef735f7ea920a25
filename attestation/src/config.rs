//! The deployment configuration (DESIGN §4): what an operator fixes at launch without rebuilding
//! the image, passed through fw_cfg `opt/ward/config` and bound to the evidence by its digest
//! (SNP `HOST_DATA` = SHA-256, TDX `MRCONFIGID` = SHA-384 of the exact bytes).
//!
//! The format is a strict subset of TOML, one `key = value` per line, documented in
//! `docs/config.md`. Parsing is strict because the bytes are untrusted until bound: an unknown
//! key, a repeated key, a malformed or out-of-range value is an error naming the line, never a
//! silent default. [`Config`]'s `Display` writes the canonical form, which parses back to the same
//! value.

use core::fmt;

mod bench;

pub use bench::{BenchConfig, MAX_BENCH_REPETITIONS, MAX_BENCH_SLOT_COUNTS, MAX_BENCH_TOKENS};

/// Longest configuration accepted, in bytes. A real one is a few hundred bytes.
pub const MAX_CONFIG_LEN: usize = 4096;
/// Default number of inference slots (DESIGN §14).
pub const DEFAULT_SLOTS: u32 = 8;
/// Largest slot count accepted.
pub const MAX_SLOTS: u32 = 64;
/// Default length of the bounded admission queue.
pub const DEFAULT_QUEUE: u32 = 16;
/// Largest admission queue accepted.
pub const MAX_QUEUE: u32 = 1024;
/// Default streaming cadence in milliseconds (one record per period; 0 = no fixed cadence).
pub const DEFAULT_CADENCE_MS: u32 = 50;
/// Longest streaming cadence accepted.
pub const MAX_CADENCE_MS: u32 = 10_000;

/// A deliberate fault for the kernel's fault tests. It is part of the bound configuration, so a
/// client sees in the evidence that the enclave was launched to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFault {
    /// Touch the guard page under the kernel stack (expects a #PF report).
    GuardPage,
    /// Panic on purpose (expects the panic report with file and line).
    Panic,
}

impl TestFault {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GuardPage => "guard-page",
            Self::Panic => "panic",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "guard-page" => Some(Self::GuardPage),
            "panic" => Some(Self::Panic),
            _ => None,
        }
    }
}

/// A parsed deployment configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lowest sealed-model version the enclave accepts (anti-rollback, DESIGN §10).
    pub min_model_version: u32,
    /// The key-release server's X25519 public key (DESIGN §12).
    pub key_release_public_key: [u8; 32],
    /// Number of inference slots.
    pub slots: u32,
    /// Length of the bounded admission queue.
    pub queue: u32,
    /// Streaming cadence in milliseconds; 0 turns the fixed cadence off.
    pub cadence_ms: u32,
    /// Test-only deliberate fault; `None` in every real deployment.
    pub test_fault: Option<TestFault>,
    /// Test-only: run the device self-check (disk hash, vsock echo) at boot; `false` in every
    /// real deployment.
    pub test_devices: bool,
    /// Test-only: report the boot and exit instead of serving; `false` in every real
    /// deployment.
    pub test_boot_only: bool,
    /// Test-only: run the SMP self-test (a sum split across every CPU, checked against the
    /// serial sum) at boot; `false` in every real deployment.
    pub test_smp: bool,
    /// Run the engine benchmark on the enclave's CPUs once the model is loaded, print its table
    /// on the serial console, then serve; `None` in an ordinary deployment.
    pub bench: Option<BenchConfig>,
}

impl Config {
    /// A configuration with the two required values and every optional one at its default.
    pub fn new(min_model_version: u32, key_release_public_key: [u8; 32]) -> Self {
        Self {
            min_model_version,
            key_release_public_key,
            slots: DEFAULT_SLOTS,
            queue: DEFAULT_QUEUE,
            cadence_ms: DEFAULT_CADENCE_MS,
            test_fault: None,
            test_devices: false,
            test_boot_only: false,
            test_smp: false,
            bench: None,
        }
    }

    /// Parses the configuration bytes exactly as they were passed (and measured).
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLong(bytes.len()));
        }
        let text = core::str::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8)?;
        let mut seen = Seen::default();
        let mut min_model_version = None;
        let mut key_release_public_key = None;
        let mut config = Self::new(0, [0; 32]);
        for (index, raw_line) in text.split('\n').enumerate() {
            let line = index + 1;
            let content = strip_comment(raw_line.strip_suffix('\r').unwrap_or(raw_line)).trim();
            if content.is_empty() {
                continue;
            }
            let (key, value) = content
                .split_once('=')
                .ok_or(ConfigError::Syntax { line })?;
            let key = Key::parse(key.trim()).ok_or(ConfigError::UnknownKey { line })?;
            if seen.mark(key) {
                return Err(ConfigError::DuplicateKey {
                    line,
                    key: key.name(),
                });
            }
            let value = value.trim();
            let bad = ConfigError::BadValue {
                line,
                key: key.name(),
            };
            match key {
                Key::MinModelVersion => {
                    min_model_version = Some(parse_u32(value, u32::MAX).ok_or(bad)?)
                }
                Key::ReleaseServerPublic => {
                    key_release_public_key = Some(parse_key(value).ok_or(bad)?)
                }
                Key::Slots => {
                    config.slots = parse_u32(value, MAX_SLOTS).filter(|&s| s > 0).ok_or(bad)?
                }
                Key::Queue => config.queue = parse_u32(value, MAX_QUEUE).ok_or(bad)?,
                Key::CadenceMs => {
                    config.cadence_ms = parse_u32(value, MAX_CADENCE_MS).ok_or(bad)?
                }
                Key::TestFault => {
                    let name = parse_string(value).ok_or(bad)?;
                    config.test_fault = Some(TestFault::parse(name).ok_or(bad)?);
                }
                Key::TestDevices => config.test_devices = parse_bool(value).ok_or(bad)?,
                Key::TestBootOnly => config.test_boot_only = parse_bool(value).ok_or(bad)?,
                Key::TestSmp => config.test_smp = parse_bool(value).ok_or(bad)?,
                Key::Bench => {
                    config.bench = Some(BenchConfig::parse(value, MAX_SLOTS, parse_u32).ok_or(bad)?)
                }
            }
        }
        config.min_model_version =
            min_model_version.ok_or(ConfigError::MissingKey(Key::MinModelVersion.name()))?;
        config.key_release_public_key = key_release_public_key
            .ok_or(ConfigError::MissingKey(Key::ReleaseServerPublic.name()))?;
        Ok(config)
    }
}

/// The canonical text form: every key, in the documented order, one per line.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "min_model_version = {}", self.min_model_version)?;
        f.write_str("key_release_public_key = \"")?;
        for byte in self.key_release_public_key {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("\"\n")?;
        writeln!(f, "slots = {}", self.slots)?;
        writeln!(f, "queue = {}", self.queue)?;
        writeln!(f, "cadence_ms = {}", self.cadence_ms)?;
        if let Some(fault) = self.test_fault {
            writeln!(f, "test_fault = \"{}\"", fault.as_str())?;
        }
        if self.test_devices {
            writeln!(f, "test_devices = true")?;
        }
        if self.test_boot_only {
            writeln!(f, "test_boot_only = true")?;
        }
        if self.test_smp {
            writeln!(f, "test_smp = true")?;
        }
        if let Some(bench) = self.bench {
            writeln!(f, "bench = {bench}")?;
        }
        Ok(())
    }
}

/// Why a configuration was refused. Lines are 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Longer than [`MAX_CONFIG_LEN`].
    TooLong(usize),
    /// Not UTF-8 text.
    NotUtf8,
    /// A line that is neither blank, a comment, nor `key = value`.
    Syntax {
        /// The offending line.
        line: usize,
    },
    /// A key this version does not know.
    UnknownKey {
        /// The offending line.
        line: usize,
    },
    /// A key given twice.
    DuplicateKey {
        /// The second occurrence.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A value that is malformed or out of range for its key.
    BadValue {
        /// The offending line.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A required key is absent.
    MissingKey(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(len) => {
                write!(
                    f,
                    "configuration is {len} bytes, at most {MAX_CONFIG_LEN} accepted"
                )
            }
            Self::NotUtf8 => f.write_str("configuration is not UTF-8 text"),
            Self::Syntax { line } => write!(f, "line {line}: expected `key = value`"),
            Self::UnknownKey { line } => write!(f, "line {line}: unknown key"),
            Self::DuplicateKey { line, key } => write!(f, "line {line}: `{key}` given twice"),
            Self::BadValue { line, key } => write!(
                f,
                "line {line}: bad value for `{key}` ({})",
                Key::parse(key).map_or("", Key::expects)
            ),
            Self::MissingKey(key) => write!(f, "required key `{key}` is missing"),
        }
    }
}

impl core::error::Error for ConfigError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    MinModelVersion,
    ReleaseServerPublic,
    Slots,
    Queue,
    CadenceMs,
    TestFault,
    TestDevices,
    TestBootOnly,
    TestSmp,
    Bench,
}

impl Key {
    const ALL: [Key; 10] = [
        Key::MinModelVersion,
        Key::ReleaseServerPublic,
        Key::Slots,
        Key::Queue,
        Key::CadenceMs,
        Key::TestFault,
        Key::TestDevices,
        Key::TestBootOnly,
        Key::TestSmp,
        Key::Bench,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::MinModelVersion => "min_model_version",
            Self::ReleaseServerPublic => "key_release_public_key",
            Self::Slots => "slots",
            Self::Queue => "queue",
            Self::CadenceMs => "cadence_ms",
            Self::TestFault => "test_fault",
            Self::TestDevices => "test_devices",
            Self::TestBootOnly => "test_boot_only",
            Self::TestSmp => "test_smp",
            Self::Bench => "bench",
        }
    }

    fn expects(self) -> &'static str {
        match self {
            Self::MinModelVersion => "an integer 0..=4294967295",
            Self::ReleaseServerPublic => "a quoted string of 64 hex digits",
            Self::Slots => "an integer 1..=64",
            Self::Queue => "an integer 0..=1024",
            Self::CadenceMs => "an integer 0..=10000",
            Self::TestFault => "\"guard-page\" or \"panic\"",
            Self::TestDevices | Self::TestBootOnly | Self::TestSmp => "true or false",
            Self::Bench => {
                "an inline table { prompt = 1..=4096, gen = 1..=4096, repetitions = 1..=100, slots = [up to 8 of 1..=64] }, each member optional"
            }
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.name() == name)
    }
}

#[derive(Default)]
struct Seen(u16);

impl Seen {
    /// Records `key`; returns whether it had been seen before.
    fn mark(&mut self, key: Key) -> bool {
        let bit = 1u16 << (key as u8);
        let before = self.0 & bit != 0;
        self.0 |= bit;
        before
    }
}

/// Drops a `#` comment. Values never contain `#` (keys are hex or fixed words), so the first `#`
/// starts the comment.
fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(before, _)| before)
}

/// A TOML boolean.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A decimal integer (TOML style: digits with single `_` separators, no sign, no leading zeros).
fn parse_u32(text: &str, max: u32) -> Option<u32> {
    let bytes = text.as_bytes();
    let (first, last) = (*bytes.first()?, *bytes.last()?);
    if !first.is_ascii_digit() || !last.is_ascii_digit() || text.contains("__") {
        return None;
    }
    if first == b'0' && bytes.len() > 1 {
        return None;
    }
    let mut value: u32 = 0;
    for &byte in bytes {
        match byte {
            b'_' => continue,
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u32::from(byte - b'0'))?;
            }
            _ => return None,
        }
    }
    (value <= max).then_some(value)
}

/// A basic TOML string without escapes: `"..."`.
fn parse_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then_some(inner)
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    let hex = parse_string(text)?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1, Alice's public key: a well-known value, for tests only.
    const KEY_HEX: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    fn key() -> [u8; 32] {
        parse_key(&format!("\"{KEY_HEX}\"")).unwrap()
    }

    fn minimal() -> String {
        format!("min_model_version = 3\nkey_release_public_key = \"{KEY_HEX}\"\n")
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::parse(minimal().as_bytes()).unwrap();
        assert_eq!(config, Config::new(3, key()));
        assert_eq!(config.key_release_public_key[0], 0x85);
        assert_eq!(config.key_release_public_key[31], 0x6a);
        assert_eq!(config.slots, DEFAULT_SLOTS);
        assert_eq!(config.test_fault, None);
    }

    #[test]
    fn full_config_with_comments_and_crlf() {
        let text = format!(
            "# deployment\r\nmin_model_version = 1_000 # floor\r\n\r\n  key_release_public_key=\"{}\"\r\nslots = 4\nqueue = 0\ncadence_ms = 0\ntest_fault = \"guard-page\"\n",
            KEY_HEX.to_uppercase()
        );
        let config = Config::parse(text.as_bytes()).unwrap();
        assert_eq!(config.min_model_version, 1000);
        assert_eq!(config.key_release_public_key, key());
        assert_eq!((config.slots, config.queue, config.cadence_ms), (4, 0, 0));
        assert_eq!(config.test_fault, Some(TestFault::GuardPage));
    }

    #[test]
    fn canonical_text_round_trips() {
        let mut config = Config::new(u32::MAX, key());
        config.slots = MAX_SLOTS;
        config.queue = MAX_QUEUE;
        config.cadence_ms = 7;
        for fault in [None, Some(TestFault::Panic), Some(TestFault::GuardPage)] {
            config.test_fault = fault;
            let text = config.to_string();
            assert_eq!(Config::parse(text.as_bytes()), Ok(config), "{text}");
        }
        config.test_devices = true;
        let text = config.to_string();
        assert!(text.ends_with("test_devices = true\n"), "{text}");
        assert_eq!(Config::parse(text.as_bytes()), Ok(config), "{text}");
        config.test_smp = true;
        let text = config.to_string();
        assert!(text.ends_with("test_smp = true\n"), "{text}");
        assert_eq!(Config::parse(text.as_bytes()), Ok(config), "{text}");
        assert!(Config::new(3, key()).to_string().starts_with(&minimal()));
    }

    #[test]
    fn refuses_unknown_duplicate_and_missing_keys() {
        let unknown = format!("{}colour = 1\n", minimal());
        assert_eq!(
            Config::parse(unknown.as_bytes()),
            Err(ConfigError::UnknownKey { line: 3 })
        );
        let duplicate = format!("{}min_model_version = 4\n", minimal());
        assert_eq!(
            Config::parse(duplicate.as_bytes()),
            Err(ConfigError::DuplicateKey {
                line: 3,
                key: "min_model_version"
            })
        );
        assert_eq!(
            Config::parse(b"min_model_version = 1\n"),
            Err(ConfigError::MissingKey("key_release_public_key"))
        );
        assert_eq!(
            Config::parse(format!("key_release_public_key = \"{KEY_HEX}\"").as_bytes()),
            Err(ConfigError::MissingKey("min_model_version"))
        );
        assert_eq!(
            Config::parse(b"just words\n"),
            Err(ConfigError::Syntax { line: 1 })
        );
        assert_eq!(
            Config::parse(b""),
            Err(ConfigError::MissingKey("min_model_version"))
        );
    }

    #[test]
    fn refuses_bad_values() {
        let cases: &[(&str, &str)] = &[
            ("min_model_version = -1", "min_model_version"),
            ("min_model_version = 4294967296", "min_model_version"),
            ("min_model_version = 01", "min_model_version"),
            ("min_model_version = 1__0", "min_model_version"),
            ("min_model_version = _1", "min_model_version"),
            ("min_model_version = 0x10", "min_model_version"),
            ("min_model_version = \"1\"", "min_model_version"),
            ("min_model_version =", "min_model_version"),
            ("slots = 0", "slots"),
            ("slots = 65", "slots"),
            ("queue = 1025", "queue"),
            ("cadence_ms = 10001", "cadence_ms"),
            ("test_fault = panic", "test_fault"),
            ("test_fault = \"reboot\"", "test_fault"),
            ("test_devices = yes", "test_devices"),
            ("test_devices = \"true\"", "test_devices"),
            ("key_release_public_key = 8520", "key_release_public_key"),
            (
                "key_release_public_key = \"8520\"",
                "key_release_public_key",
            ),
        ];
        for (line, key) in cases {
            let text = format!("{line}\n{}", minimal());
            assert_eq!(
                Config::parse(text.as_bytes()),
                Err(ConfigError::BadValue { line: 1, key }),
                "{line}"
            );
        }
        let bad_hex = KEY_HEX.replace('a', "g");
        let text = format!("min_model_version = 1\nkey_release_public_key = \"{bad_hex}\"\n");
        assert!(matches!(
            Config::parse(text.as_bytes()),
            Err(ConfigError::BadValue { .. })
        ));
    }

    #[test]
    fn bench_table_parses_defaults_and_round_trips() {
        let text = format!(
            "{}bench = {{ prompt = 16, gen = 8, slots = [1, 2] }}\n",
            minimal()
        );
        let config = Config::parse(text.as_bytes()).unwrap();
        let bench = config.bench.unwrap();
        assert_eq!((bench.prompt, bench.generate), (16, 8));
        assert_eq!(bench.repetitions, BenchConfig::default().repetitions);
        assert_eq!(bench.slots(), [1, 2]);
        let canonical = config.to_string();
        assert!(
            canonical
                .ends_with("bench = { prompt = 16, gen = 8, repetitions = 5, slots = [1, 2] }\n"),
            "{canonical}"
        );
        assert_eq!(Config::parse(canonical.as_bytes()), Ok(config));
        // Spacing is free; every member is optional.
        for (value, expected) in [
            ("{}", BenchConfig::default()),
            ("{ }", BenchConfig::default()),
            ("{repetitions=1,slots=[ 64 ]}", {
                let mut one_run = BenchConfig::default().with_slots(&[64], MAX_SLOTS).unwrap();
                one_run.repetitions = 1;
                one_run
            }),
            ("{ slots = [] }", BenchConfig::default()),
        ] {
            let text = format!("{}bench = {value}\n", minimal());
            let parsed = Config::parse(text.as_bytes()).unwrap().bench;
            assert_eq!(parsed, Some(expected), "{value}");
        }
        assert_eq!(Config::parse(minimal().as_bytes()).unwrap().bench, None);
    }

    #[test]
    fn bench_table_refuses_what_it_does_not_know() {
        for value in [
            "",
            "16",
            "{ prompt = 16",
            "prompt = 16 }",
            "{ prompt = 0 }",
            "{ prompt = 4097 }",
            "{ gen = 0 }",
            "{ repetitions = 101 }",
            "{ prompt = 16, prompt = 8 }",
            "{ threads = 2 }",
            "{ prompt = 16, }",
            "{ , prompt = 16 }",
            "{ prompt 16 }",
            "{ slots = 1 }",
            "{ slots = [0] }",
            "{ slots = [65] }",
            "{ slots = [1, 2, 3, 4, 5, 6, 7, 8, 9] }",
            "{ slots = [1,, 2] }",
            "{ slots = [1, 2 }",
            "{ slots = [[1]] }",
            "{ slots = ]1[ }",
            "{ prompt = \"16\" }",
            "{ prompt = 16, gen = 8, repetitions = 2, slots = [1], prompt = 3 }",
        ] {
            let text = format!("{}bench = {value}\n", minimal());
            assert_eq!(
                Config::parse(text.as_bytes()),
                Err(ConfigError::BadValue {
                    line: 3,
                    key: "bench"
                }),
                "{value}"
            );
        }
    }

    #[test]
    fn refuses_oversized_and_binary_input() {
        assert_eq!(
            Config::parse(&[b' '; MAX_CONFIG_LEN + 1]),
            Err(ConfigError::TooLong(4097))
        );
        assert_eq!(Config::parse(&[0xff, 0xfe]), Err(ConfigError::NotUtf8));
    }

    #[test]
    fn errors_explain_themselves() {
        let error = ConfigError::BadValue {
            line: 2,
            key: "slots",
        };
        assert_eq!(
            error.to_string(),
            "line 2: bad value for `slots` (an integer 1..=64)"
        );
    }
}

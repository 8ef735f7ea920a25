//! The benchmark boot option (`bench` in the deployment configuration): with `-smp 2` and the
//! tiny model, once the key is released the enclave measures prompt processing and decoding on
//! one and on both CPUs and batched decoding at each configured slot count, prints `ward
//! bench`'s table on the serial console, then serves. Under TCG the figures mean nothing about
//! real hardware; this checks that the table is there with the right rows and positive figures,
//! that the configuration (and so the option) is what the client sees bound in the evidence, and
//! that the enclave answers afterwards.
//!
//! Needs the image and the `ward` binary: `cargo run --release -p ward-tools -- build`.

use sha2::{Digest, Sha384};
use std::time::Duration;
use ward_attestation::config::BenchConfig;
use ward_tests::enclave::{Enclave, Owner, hex, host_greedy, json_text, ward};
use ward_tools::tiny_model::TinyModelSpec;

const BENCH: &str = "bench = { prompt = 16, gen = 8, repetitions = 2, slots = [1, 2] }";
const DONE: &str = "bench: done, serving";

/// The rows of the printed table: each `bench: ` line after the settings line.
fn table(serial: &str) -> Vec<String> {
    serial
        .lines()
        .filter_map(|line| line.split_once("bench: ").map(|(_, rest)| rest.to_string()))
        .collect()
}

/// The figures of the table row whose first columns are `head`.
fn row(table: &[String], head: &[&str]) -> Option<(f64, f64)> {
    table.iter().find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let rest = columns.strip_prefix(head)?;
        match rest {
            [mean, sd] => Some((mean.parse().ok()?, sd.parse().ok()?)),
            _ => None,
        }
    })
}

#[test]
fn the_benchmark_runs_on_both_cpus_then_the_enclave_serves() {
    let owner = Owner::tiny("bench-boot", &TinyModelSpec::default());
    let config = owner.config(2, |c| {
        c.slots = 2;
        c.cadence_ms = 20;
        let mut bench = BenchConfig::default().with_slots(&[1, 2], 64).unwrap();
        (bench.prompt, bench.generate, bench.repetitions) = (16, 8, 2);
        c.bench = Some(bench);
    });
    let config_text = std::fs::read_to_string(&config).unwrap();
    assert!(config_text.contains(BENCH), "{config_text}");
    let mut enclave = Enclave::boot(&config, &owner.disk, 512, 2);
    assert!(owner.release_key(&enclave.addr()).status.success());
    let done = enclave.vm.wait_for_line(DONE, Duration::from_secs(240));
    let serial = enclave.serial();
    assert!(done.is_some(), "{serial}");

    let table = table(&serial);
    eprintln!("---- in-enclave benchmark ----\n{}", table.join("\n"));
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("model ward-tiny version 3 (")),
        "{table:?}"
    );
    for head in [["1", "pp16"], ["1", "tg8"], ["2", "pp16"], ["2", "tg8"]] {
        let (mean, sd) = row(&table, &head).unwrap_or_else(|| panic!("{head:?}: {table:?}"));
        assert!(
            mean > 0.0 && mean.is_finite() && sd >= 0.0,
            "{head:?}: {mean} ± {sd}"
        );
    }
    assert!(
        table
            .iter()
            .any(|l| l == "batched decode on 2 threads, aggregate over all slots:"),
        "{table:?}"
    );
    for slots in ["1", "2"] {
        let (mean, _) = row(&table, &[slots]).unwrap_or_else(|| panic!("{slots}: {table:?}"));
        assert!(mean > 0.0 && mean.is_finite(), "{slots} slots: {mean}");
    }
    let json = table
        .iter()
        .find_map(|l| l.strip_prefix("json "))
        .expect("the JSON line");
    assert!(
        json.starts_with("{\"threads\":{\"1\":{\"prompt_tps\":")
            && json.contains("\"2\":{\"prompt_tps\":")
            && json.ends_with("\"threads_for_slots\":2}"),
        "{json}"
    );

    // Then it serves, and the client sees the configuration with the option in the evidence.
    let answer = ward(&[
        "chat",
        "--connect",
        &enclave.addr(),
        "--allow-simulated",
        "--json",
        "--max-tokens",
        "12",
        "count",
    ]);
    assert!(answer.status.success());
    assert_eq!(json_text(&answer), host_greedy(&owner.gguf, "count", 12));
    let stdout = String::from_utf8_lossy(&answer.stdout);
    let digest = hex(&Sha384::digest(config_text.as_bytes()));
    assert!(stdout.contains(&digest), "{stdout}");
}

//! The config loader's fuzz entry point (`fuzz/fuzz_targets/config.rs`, `scripts/fuzz`), and
//! what every crate's tests replay of its fuzz targets: the committed seeds, the local corpus
//! the fuzzer grew, and random edits of them. The coverage-guided search runs in
//! `scripts/fuzz`; the replay runs in the normal test build, so CI checks each target's inputs
//! and a few thousand neighbours of them without a second, instrumented build.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use crate::{ENV_OVERRIDES, SECRET_ENV, load_from_str};

/// The secrets a valid config needs, so that inputs reach validation rather than stopping at
/// "missing"; the input may override them.
const DATABASE_URL: &str = "postgres://u:p@127.0.0.1:5432/db";
const CLUSTER_PSK: &str = "0101010101010101010101010101010101010101010101010101010101010101";

/// Every variable the loader reads: the overrides, then the secrets.
static VARS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ENV_OVERRIDES
        .iter()
        .map(|o| o.var)
        .chain(SECRET_ENV.iter().map(|(var, _)| *var))
        .collect()
});

/// TOML text and `SHOAL_*` values, as an operator, a templating tool or an orchestrator hands
/// them to a node: invalid input must come back as errors naming the key, never as a panic.
///
/// Input: the TOML text, optionally followed by a NUL byte and environment lines, each a
/// selector byte (an index, modulo their count, into the variables the loader reads) followed
/// by the value.
pub fn load(data: &[u8]) {
    // The loader only reads the files that `*_file` keys name (it never writes). Device and
    // kernel files could block or never end (`/dev/zero`): a hang of the harness, not a bug.
    const SPECIAL: [&[u8]; 3] = [b"/dev/", b"/proc/", b"/sys/"];
    if SPECIAL
        .iter()
        .any(|dir| data.windows(dir.len()).any(|w| w == *dir))
    {
        return;
    }
    let (text, env_lines) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let mut env = BTreeMap::from([
        ("SHOAL_DATABASE_URL".to_string(), DATABASE_URL.to_string()),
        ("SHOAL_CLUSTER_PSK".to_string(), CLUSTER_PSK.to_string()),
    ]);
    for line in env_lines.split(|&b| b == b'\n') {
        let Some((&selector, value)) = line.split_first() else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        let var = VARS[usize::from(selector) % VARS.len()];
        env.insert(var.to_string(), value.to_string());
    }
    if let Err(e) = load_from_str(text, Path::new("shoal.toml"), &env) {
        let _ = e.to_string();
    }
}

/// `fuzz/<kind>/<target>` in the repository.
#[cfg(any(test, feature = "testsuite"))]
fn fuzz_dir(kind: &str, target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target)
}

/// A fuzz target's seeds (committed, at least one) and the corpus `scripts/fuzz` grew here
/// (kept locally, absent on a fresh clone).
#[cfg(any(test, feature = "testsuite"))]
pub fn inputs(target: &str) -> Vec<Vec<u8>> {
    let read = |kind: &str| -> Vec<Vec<u8>> {
        let Ok(dir) = std::fs::read_dir(fuzz_dir(kind, target)) else {
            return Vec::new();
        };
        let mut files: Vec<std::path::PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    };
    let seeds = read("seeds");
    assert!(
        !seeds.is_empty(),
        "no seeds in {}",
        fuzz_dir("seeds", target).display()
    );
    seeds.into_iter().chain(read("corpus")).collect()
}

/// One edit of an input: what it does, where (taken modulo the length), and the byte.
#[cfg(any(test, feature = "testsuite"))]
type Edit = (u8, usize, u8);

/// `input` after `edits`: bytes replaced, inserted, removed, or the input cut short, the
/// small changes that walk a parser off its expected path.
#[cfg(any(test, feature = "testsuite"))]
fn mutate(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for &(kind, at, byte) in edits {
        let at = at % (bytes.len() + 1);
        match kind % 4 {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            _ => {}
        }
    }
    bytes
}

/// A target's inputs ([`inputs`]) with one to seven random edits each, for a proptest.
#[cfg(any(test, feature = "testsuite"))]
pub fn edited(target: &str) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let inputs = inputs(target);
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<Edit>(), 1..8),
    )
        .prop_map(move |(pick, edits)| mutate(&inputs[pick.index(inputs.len())], &edits))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_seed_and_corpus_input_loads_or_is_refused_without_a_panic() {
        for input in inputs("config") {
            load(&input);
        }
    }

    #[test]
    fn edits_stay_inside_the_input() {
        assert_eq!(mutate(b"abc", &[(0, 1, b'x')]), b"axc");
        assert_eq!(mutate(b"abc", &[(1, 3, b'd')]), b"abcd");
        assert_eq!(mutate(b"abc", &[(2, 4, 0)]), b"bc");
        assert_eq!(mutate(b"abc", &[(3, 1, 0)]), b"a");
        assert_eq!(mutate(b"", &[(0, 9, 1), (2, 9, 1), (1, 9, 7)]), [7]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn edited_inputs_load_or_are_refused_without_a_panic(input in edited("config")) {
            load(&input);
        }
    }
}

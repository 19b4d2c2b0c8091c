//! The bootstrap config loader: TOML text and `SHOAL_*` environment values, as an operator, a
//! templating tool or an orchestrator hands them to a node. Invalid input must come back as
//! errors naming the key, never as a panic.
//!
//! Input: the TOML text, optionally followed by a NUL byte and environment lines, each a
//! selector byte (an index, modulo their count, into `ENV_OVERRIDES` then the secret
//! variables) followed by the value.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

/// The secrets a valid config needs, so that inputs reach validation rather than stopping at
/// "missing"; the input may override them.
const DATABASE_URL: &str = "postgres://u:p@127.0.0.1:5432/db";
const CLUSTER_PSK: &str = "0101010101010101010101010101010101010101010101010101010101010101";

/// Read besides `ENV_OVERRIDES` (shoal-config's private `SECRET_ENV`).
const SECRET_VARS: [&str; 4] = [
    "SHOAL_DATABASE_URL",
    "SHOAL_CLUSTER_PSK",
    "SHOAL_SECRETS_KEY",
    "SHOAL_TELEMETRY_OTLP_HEADERS",
];

static VARS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    shoal_config::ENV_OVERRIDES
        .iter()
        .map(|o| o.var)
        .chain(SECRET_VARS)
        .collect()
});

fuzz_target!(|data: &[u8]| {
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
    // `load` reads the file into a String and the environment as Strings: only UTF-8 arrives.
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
    if let Err(e) = shoal_config::load_from_str(text, Path::new("shoal.toml"), &env) {
        // The message an operator reads is built from the input too.
        let _ = e.to_string();
    }
});

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a config value came from, so an error points at the place to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Env(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// Line numbers of the keys present in the file, by dotted path.
pub(crate) struct Origins {
    path: PathBuf,
    lines: BTreeMap<String, usize>,
}

impl Origins {
    pub(crate) fn new(text: &str, path: &Path) -> Self {
        let mut lines = BTreeMap::new();
        if let Ok(table) = toml::de::DeTable::parse(text) {
            collect_lines(text, "", table.get_ref(), &mut lines);
        }
        Self {
            path: path.to_path_buf(),
            lines,
        }
    }

    /// Every key the file sets, by dotted path (`clusters[N].` for list entries).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.lines.keys()
    }

    pub(crate) fn of(&self, key: &str) -> Origin {
        match self.lines.get(key) {
            Some(&line) => Origin::File {
                path: self.path.clone(),
                line,
            },
            None => Origin::Default,
        }
    }
}

fn collect_lines(
    text: &str,
    prefix: &str,
    table: &toml::de::DeTable<'_>,
    out: &mut BTreeMap<String, usize>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.insert(path.clone(), line_col(text, key.span().start).0);
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => collect_lines(text, &path, inner, out),
            // `[[clusters]]` entries are named `clusters[N]`, each at its table's first key.
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::de::DeValue::Table(inner) = item.get_ref() {
                        let entry = format!("{path}[{i}]");
                        out.insert(entry.clone(), line_col(text, item.span().start).0);
                        collect_lines(text, &entry, inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

//! Configuration files: what `ipscope config --default` documents, and what the runs that
//! take `--config` do with sections they cannot honour.

mod common;

use common::*;
use ipscope::config::Config;

/// The keys of one `[section]` of a printed configuration, each with the comment lines
/// right above it.
fn keys_with_comments(text: &str, section: &str) -> Vec<(String, Vec<String>)> {
    let mut inside = false;
    let mut comments = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == format!("[{section}]");
            comments.clear();
        } else if let Some(c) = t.strip_prefix('#') {
            comments.push(c.trim().to_string());
        } else if inside && t.contains('=') {
            let key = t.split('=').next().unwrap_or_default().trim().to_string();
            out.push((key, std::mem::take(&mut comments)));
        } else {
            comments.clear();
        }
    }
    out
}

#[test]
fn config_default_documents_every_illumination_key() {
    let o = ipscope(&["config", "--default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let keys = keys_with_comments(&text, "illumination");
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "enabled",
            "channels",
            "intensity",
            "block_size",
            "method",
            "rescale"
        ],
        "{text}"
    );
    for (key, comments) in &keys {
        assert!(
            comments.iter().any(|c| c.len() > 20),
            "[illumination] {key} has no comment above it:\n{text}"
        );
    }
    // `size` (unset by default) is documented with a commented example that is valid.
    let section = &text[text.find("[illumination]").unwrap()..];
    let section = &section[..section.find("\n[").unwrap_or(section.len())];
    assert!(section.contains("CellProfiler's automatic"), "{section}");
    assert!(section.contains("# size = 20.0"), "{section}");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ipscope.toml");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(
        Config::from_file(&path).unwrap().to_toml(),
        Config::default().to_toml(),
        "the printed defaults read back as the defaults"
    );
    std::fs::write(&path, text.replace("# size = 20.0", "size = 20.0")).unwrap();
    assert_eq!(
        Config::from_file(&path).unwrap().illumination.size,
        Some(20.0)
    );
}

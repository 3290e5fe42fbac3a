//! Configuration files: what `ipscope config --default` documents, and what the runs that
//! take `--config` do with sections they cannot honour.

mod common;

use std::path::Path;

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

/// `run --assay calcium|contraction --config`: `[channels]` and `[input]` apply as in the
/// nuclei run; `[illumination] enabled = true`, which they cannot honour, is refused.
#[test]
fn time_lapse_runs_apply_input_and_channels_and_refuse_illumination() {
    let tmp = tempfile::tempdir().unwrap();
    let plate = tmp.path().join("calcium");
    ipscope::demo_calcium::generate(&plate, &Default::default()).unwrap();
    let cfg = tmp.path().join("lab.toml");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            p(&plate),
            "-o",
            p(out),
            "--config",
            p(&cfg),
            "--quiet",
        ];
        args.extend(extra);
        ipscope(&args)
    };

    std::fs::write(&cfg, "[illumination]\nenabled = true\n").unwrap();
    for assay in ["calcium", "contraction"] {
        let out = tmp.path().join(format!("illum_{assay}"));
        let o = run(&out, &["--assay", assay, "--channel", "w1=Calcium"]);
        assert_eq!(o.status.code(), Some(1), "{assay}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("lab.toml")
                && e.contains("[illumination]")
                && e.contains(&format!("the {assay} assay does not correct illumination")),
            "{assay}: {e}"
        );
        assert!(!out.exists(), "{assay}: nothing written");
    }

    // [channels] names the signal channel when --channel does not.
    std::fs::write(&cfg, "[channels]\nw1 = \"Fluo4\"\n").unwrap();
    let out = tmp.path().join("named");
    let o = run(&out, &["--assay", "calcium"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traces = table(&out.join("Traces.parquet"));
    assert!(
        traces
            .schema()
            .column_with_name("Intensity_MeanIntensity_Fluo4")
            .is_some(),
        "{:?}",
        traces.schema()
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["parameters"]["channels"]["w1"], "Fluo4");

    // [input] max_pixels: frames above it are refused, naming the limit; --max-pixels wins.
    std::fs::write(&cfg, "[input]\nmax_pixels = 100\n").unwrap();
    let out = tmp.path().join("limited");
    let o = run(&out, &["--assay", "calcium", "--channel", "w1=Calcium"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let errors = table(&out.join("Errors.parquet"));
    let messages = strs(&errors, "Message");
    assert!(
        !messages.is_empty() && messages.iter().all(|m| m.contains("limit of 100 pixels")),
        "{messages:?}"
    );
    let out = tmp.path().join("flag_wins");
    let o = run(
        &out,
        &[
            "--assay",
            "calcium",
            "--channel",
            "w1=Calcium",
            "--max-pixels",
            "1600",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

//! Configuration files: what `ipscope config --default` documents, and what the runs that
//! take `--config` do with sections they cannot honour.

use crate::common;

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

/// Whether a line of the printed file is a commented example (`# key = value`), not a doc.
fn commented_example(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let (key, _) = rest.split_once(" = ")?;
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    bare.then_some(rest)
}

/// `config --default`: every section header, key and commented example has a doc line
/// right above it; the file reads back as the defaults; and uncommenting every example in
/// place sets exactly those keys, each in its own section.
#[test]
fn config_default_documents_every_key_and_its_examples_parse_in_place() {
    let o = ipscope(&["config", "--default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        let key_line = !line.starts_with(['#', ' ', ']']) && line.contains(" = ");
        let header = line.starts_with('[');
        if key_line || header || commented_example(line).is_some() {
            let above = if i > 0 { lines[i - 1] } else { "" };
            assert!(
                above.starts_with("# ") && commented_example(above).is_none() && above.len() > 12,
                "line {} `{line}` has no doc line right above it:\n{text}",
                i + 1
            );
            keys += usize::from(key_line);
        }
    }
    // Every section of Config::default() is there, keys and all (the file reads back).
    assert!(keys > 60, "only {keys} keys printed:\n{text}");
    // And no doc is left over for a key that is no longer printed.
    for s in Config::SECTION_DOCS {
        let header = format!("[{}]\n", s.section);
        assert!(s.section.is_empty() || text.contains(&header), "{header}");
        for (key, _) in s.keys {
            assert!(
                text.contains(&format!("\n{key} = ")) || text.contains(&format!("\n# {key} = ")),
                "[{}] {key} is documented but not printed:\n{text}",
                s.section
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ipscope.toml");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(Config::from_file(&path).unwrap(), Config::default());

    let examples: Vec<&str> = lines.iter().filter_map(|l| commented_example(l)).collect();
    let uncommented: String = lines
        .iter()
        .map(|l| commented_example(l).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, &uncommented).unwrap();
    let got = Config::from_file(&path)
        .unwrap_or_else(|e| panic!("{e}\nexamples: {examples:#?}\n{uncommented}"));
    // The unset keys, each set where it belongs, and nothing else changed.
    assert_eq!(got.acceptance.len(), 1, "{examples:?}");
    let a = &got.acceptance[0];
    assert_eq!(
        (
            a.name.as_deref(),
            a.marker.as_str(),
            format!("{:?}", a.op),
            a.percent
        ),
        (None, "OCT4", "Ge".to_string(), 80.0)
    );
    let mut want = Config {
        acceptance: got.acceptance.clone(),
        colonies_from: Some(ipscope::colony_run::ColonySource::Nuclei),
        ..Config::default()
    };
    want.input.pattern =
        Some(r"(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9]+)_(?P<Channel>w[0-9])\.tif".into());
    want.channels.insert("w1".into(), "DNA".into());
    want.nuclei.min_seed_distance = Some(3);
    want.disease.vehicle = Some("DMSO".into());
    want.qc.min_power_log_log_slope = Some(-1.5);
    want.illumination.size = Some(20.0);
    assert_eq!(got, want, "examples: {examples:#?}");
    assert_eq!(examples.len(), 8, "{examples:#?}");
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

/// The peer benchmark's configurations parse (a typo would make `benches/peer/run.sh` fail
/// only when someone runs it), and `recipe.toml` sets the scikit-image recipe's steps.
#[test]
fn peer_benchmark_configs_parse_and_recipe_mirrors_the_recipe() {
    use ipscope::core::assays::nuclei::DeclumpMethod;
    use ipscope::core::assays::nuclei::ThresholdMethod;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/peer");
    let job = Config::from_file(&dir.join("job.toml")).unwrap();
    assert!(!job.qc.enabled);
    let recipe = Config::from_file(&dir.join("recipe.toml")).unwrap();
    let n = &recipe.nuclei;
    assert!(!recipe.qc.enabled);
    assert_eq!(n.threshold_method, ThresholdMethod::Otsu);
    assert_eq!(n.declump_method, DeclumpMethod::Shape);
    assert_eq!(n.smoothing_sigma, 1.0);
    assert_eq!(n.background_radius, 0.0);
    assert_eq!((n.object_contrast, n.outline_contrast), (0.0, 0.0));
    assert_eq!(n.min_seed_distance, Some(7));
    assert!(!n.auto_scale);
    // remove_small_objects(max_size=29): objects of 30 px and more stay; the equivalent
    // diameter of 30 px is 6.18 px.
    let d = |area: f32| (4.0 * area / std::f32::consts::PI).sqrt();
    assert!(
        d(29.0) < n.min_diameter && n.min_diameter <= d(30.0),
        "{}",
        n.min_diameter
    );
}

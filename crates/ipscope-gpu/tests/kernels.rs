//! CPU-only checks of the WGSL kernels: every file in `kernels/` parses and validates with
//! naga (the compiler wgpu itself uses), is registered in `ipscope_gpu::kernels::KERNELS`
//! with entry points that exist, and has a parity case in `tests/parity.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ipscope_gpu::kernels::KERNELS;

fn kernels_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels")
}

fn wgsl_files() -> BTreeSet<String> {
    let dir = kernels_dir();
    let rd =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "wgsl").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect()
}

fn validate(name: &str, source: &str) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}.wgsl does not parse:\n{}", e.emit_to_string(source)))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| {
        format!(
            "{name}.wgsl does not validate:\n{}",
            e.emit_to_string(source)
        )
    })?;
    Ok(module)
}

#[test]
fn every_wgsl_file_parses_and_validates() {
    let files = wgsl_files();
    assert!(!files.is_empty(), "no .wgsl file in kernels/");
    for name in &files {
        let path = kernels_dir().join(format!("{name}.wgsl"));
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if let Err(e) = validate(name, &source) {
            panic!("{e}");
        }
    }
}

#[test]
fn validation_rejects_a_broken_shader() {
    // The check above must be able to fail: a type error and a syntax error are caught.
    let bad_type = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    assert!(validate("bad_type", bad_type).is_err());
    let bad_syntax = "@compute @workgroup_size(1) fn main() { let x = ; }";
    assert!(validate("bad_syntax", bad_syntax).is_err());
    let good = "@compute @workgroup_size(1) fn main() { let x: u32 = 1u; }";
    assert!(validate("good", good).is_ok());
}

#[test]
fn registry_matches_the_kernel_files_and_their_entry_points() {
    let files = wgsl_files();
    let registered: BTreeSet<String> = KERNELS.iter().map(|k| k.name.to_string()).collect();
    assert_eq!(
        files, registered,
        "kernels/*.wgsl and ipscope_gpu::kernels::KERNELS differ"
    );
    for k in KERNELS {
        let path = kernels_dir().join(format!("{}.wgsl", k.name));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(on_disk, k.source, "{}: embedded source is stale", k.name);
        let module = validate(k.name, k.source).unwrap_or_else(|e| panic!("{e}"));
        let entries: BTreeSet<&str> = module
            .entry_points
            .iter()
            .filter(|e| e.stage == naga::ShaderStage::Compute)
            .map(|e| e.name.as_str())
            .collect();
        let wanted: BTreeSet<&str> = k.entry_points.iter().copied().collect();
        assert_eq!(entries, wanted, "{}: compute entry points", k.name);
        // Bindings 0..n of group 0, as the host's layout declares them.
        let mut bindings: Vec<u32> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.binding.as_ref())
            .map(|b| {
                assert_eq!(b.group, 0, "{}: only bind group 0 is used", k.name);
                b.binding
            })
            .collect();
        bindings.sort_unstable();
        let want: Vec<u32> = (0..k.bindings.len() as u32).collect();
        assert_eq!(bindings, want, "{}: bindings", k.name);
    }
}

#[test]
fn every_kernel_entry_point_has_a_parity_case() {
    // tests/parity.rs names each case `parity_<kernel>_<entry point>...`.
    let parity =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity.rs"))
            .expect("tests/parity.rs exists");
    let mut missing = Vec::new();
    for k in KERNELS {
        for e in k.entry_points {
            let needle = format!("fn parity_{}_{}", k.name, e);
            if !parity.contains(&needle) {
                missing.push(needle);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "GPU kernels without a parity case in tests/parity.rs: {missing:?}"
    );
}

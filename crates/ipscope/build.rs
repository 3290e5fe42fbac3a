//! Records the versions of the crates that decide ipscope's numbers and files, read from the
//! workspace's Cargo.lock, so every manifest can say what produced it.

fn main() {
    const KEY: [&str; 8] = [
        "arrow-array",
        "parquet",
        "tiff",
        "png",
        "rayon",
        "regex",
        "csv",
        "roxmltree",
    ];
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut found = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if KEY.contains(&n.as_str()) {
                found.push(format!("{n}={}", v.trim_matches('"')));
            }
        }
    }
    found.sort();
    found.dedup();
    println!(
        "cargo:rustc-env=IPSCOPE_DEPENDENCY_VERSIONS={}",
        found.join(";")
    );
}

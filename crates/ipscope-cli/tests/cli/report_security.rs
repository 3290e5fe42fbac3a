//! The HTML report shows hostile names as text and loads nothing from the network, checked
//! in headless Chromium (skipped with a message when no `chromium` binary is found; CI
//! installs one).
//!
//! The demo plate is renamed so that its plate name (and so every file name) carries an
//! `<img onerror=…>` payload, and its layout names the compounds `<script>…</script>` (with
//! an image from a local port) and `"><svg onload=…>`. Each payload, if it ran, would mark
//! the page's body with `data-pwned`; the image would connect to a listener the test holds.

use crate::common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PLATE: &str = "P<img src=x onerror=document.body.dataset.pwned=1>";
const PATTERN: &str =
    r"^(?P<Plate>.+)_(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9]+)_(?P<Channel>w[0-9])\.tif$";

fn script_compound(port: u16) -> String {
    format!(
        "<script>document.body.dataset.pwned=2</script><img src=\"http://127.0.0.1:{port}/leak\">"
    )
}
const ATTRIBUTE_COMPOUND: &str = "\"><svg onload=document.body.dataset.pwned=3>";
/// The disease line of rows A–F (rows G–H are `control`), so the run writes the disease
/// tables and the report its rescue section with this name in it.
const LINE: &str = "D<svg onload=document.body.dataset.pwned=4>";

/// `chromium --headless --dump-dom URL`: the DOM after the page's scripts ran.
fn dump_dom(chrome: &Path, profile: &Path, url: &str) -> Output {
    Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium")
}

/// A local HTTP listener that counts the connections it gets and answers each with a 404, so
/// that a page requesting from it finishes loading (an unanswered request would keep
/// `--dump-dom` waiting for the load event).
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, hits)
}

/// The demo plate under a hostile plate name, with a hostile layout; returns (plate, layout).
fn hostile_plate(root: &Path, port: u16) -> (PathBuf, PathBuf) {
    let demo = root.join("demo");
    let o = ipscope(&["demo", p(&demo), "--sites", "1", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plate = root.join("plate");
    std::fs::create_dir_all(&plate).unwrap();
    for e in std::fs::read_dir(&demo).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if let Some(rest) = name.strip_prefix("DEMO01") {
            if name.ends_with(".tif") {
                std::fs::copy(&path, plate.join(format!("{PLATE}{rest}"))).unwrap();
            }
        }
    }
    let mut reader = csv::Reader::from_path(demo.join("layout.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let compound = header
        .iter()
        .position(|h| h == "Metadata_Compound")
        .expect("demo layout names compounds");
    let layout = root.join("layout.csv");
    let mut writer = csv::Writer::from_path(&layout).unwrap();
    let mut header: Vec<String> = header.iter().map(String::from).collect();
    header.push("Metadata_CellLine".into());
    writer.write_record(&header).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        let mut cells: Vec<String> = row.iter().map(String::from).collect();
        let disease = !cells[0].starts_with(['G', 'H']);
        cells.push(if disease { LINE } else { "control" }.to_string());
        match cells[compound].as_str() {
            "CMPD-A" => cells[compound] = script_compound(port),
            "CMPD-B" => cells[compound] = ATTRIBUTE_COMPOUND.to_string(),
            _ => {}
        }
        writer.write_record(&cells).unwrap();
    }
    writer.flush().unwrap();
    (plate, layout)
}

/// Every `src`, `href`, `action` and CSS `url(…)` in the page points inside it.
fn assert_no_external_references(html: &str) {
    for attr in ["src=\"", "src='", "href=\"", "href='", "action=\"", "url("] {
        for (i, _) in html.match_indices(attr) {
            let value = &html[i + attr.len()..(i + attr.len() + 40).min(html.len())];
            let value = value.trim_start_matches(['"', '\'']);
            assert!(
                value.starts_with('#') || value.starts_with("data:"),
                "the report refers outside itself: {attr}{value}"
            );
        }
    }
    for needle in ["@import", "<link", "<iframe", "<object", "<embed"] {
        assert!(!html.contains(needle), "the report holds {needle}");
    }
}

#[test]
fn hostile_names_show_as_text_and_nothing_loads_from_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, hits) = counting_listener();
    let (plate, layout) = hostile_plate(tmp.path(), port);
    let out = tmp.path().join("out");
    let o = ipscope(&[
        "run",
        p(&plate),
        "-o",
        p(&out),
        "--layout",
        p(&layout),
        "--pattern",
        PATTERN,
        "--channel",
        "w1=Hoechst",
        "--channel",
        "w2=OCT4",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = out.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();

    // In the file: the names are there, escaped; no payload survives as markup.
    assert!(html.contains("P&lt;img src=x onerror=document.body.dataset.pwned=1&gt;"));
    assert!(html.contains("&lt;script&gt;document.body.dataset.pwned=2&lt;/script&gt;"));
    assert!(html.contains("onload=document.body.dataset.pwned=3&gt;"));
    assert!(html.contains("id=\"rescue\""), "no rescue section");
    assert!(html.contains("D&lt;svg onload=document.body.dataset.pwned=4&gt;"));
    for payload in [
        "<img src=x",
        "<script>document.body.dataset.pwned",
        "<svg onload",
        "<img src=\"http://127.0.0.1",
    ] {
        let raw = html.matches(payload).count();
        assert_eq!(raw, 0, "{payload:?} appears unescaped {raw} times");
    }
    assert_no_external_references(&html);

    let Some(chrome) = chromium_binary() else {
        eprintln!("skipping the Chromium check: no chromium binary on PATH (set IPSCOPE_CHROMIUM)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();

    // The listener does see a page's image request: a control page with one.
    let control = tmp.path().join("control.html");
    std::fs::write(
        &control,
        format!("<!doctype html><img src=\"http://127.0.0.1:{port}/control\">"),
    )
    .unwrap();
    let o = dump_dom(
        &chrome,
        profile.path(),
        &format!("file://{}", control.display()),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let control_seen = hits.load(Ordering::SeqCst) > 0;
    let before_report = hits.load(Ordering::SeqCst);

    let o = dump_dom(
        &chrome,
        profile.path(),
        &format!("file://{}", report.display()),
    );
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium failed: {log}");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the report's own script did not run"
    );
    assert!(!dom.contains("data-pwned"), "a payload ran in the report");
    // Rendered as text: the DOM serialises text with < > escaped, and no element came from
    // a payload.
    assert!(dom.contains("P&lt;img src=x onerror=document.body.dataset.pwned=1&gt;"));
    assert!(dom.contains("&lt;script&gt;document.body.dataset.pwned=2&lt;/script&gt;"));
    assert!(dom.contains("onload=document.body.dataset.pwned=3&gt;"));
    for element in [
        "<img src=\"x\"",
        "<svg onload",
        "<img src=\"http://127.0.0.1",
    ] {
        assert!(!dom.contains(element), "{element} became an element");
    }
    assert!(
        hits.load(Ordering::SeqCst) == before_report,
        "the report made a network request to 127.0.0.1:{port}"
    );
    if control_seen {
        eprintln!(
            "network check: the control page's request reached the listener; the report's did not"
        );
    } else {
        eprintln!(
            "network check: this Chromium made no request even for the control page, so only the static check of src/href applies"
        );
    }
}

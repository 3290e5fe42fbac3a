//! Calcium time-lapse throughput: analysis vs merely decoding the same TIFF pages.
//!
//! Writes a plate of `--wells` wells, each a `--frames`-page 16-bit stack of `--size`²
//! pixels (beating cells from the demo's model transient plus noise), then times, in the
//! same process and over the same files:
//!
//! * decode: every page of every stack decoded into the reader's buffer, nothing else;
//! * analyse: the calcium assay per series (beating region, trace, ΔF/F0, beats), which
//!   decodes the same pages.
//!
//! and prints the ratio decode time / analysis time (1.0 = the analysis costs nothing on top
//! of decoding); with `--repeat N`, each run's ratio and the median of the N. Series run in parallel over all cores in both passes; decode runs before and
//! after the analysis and the faster of the two counts, so the page cache favours neither.
//! To keep the disk footprint small only `--unique` distinct stacks are written and the other
//! wells are hard links to them (every well is still decoded from its own path).
//!
//! ```sh
//! # the issue's figure: 96 wells × 1,000 frames × 256² (≈ 0.5 GB on disk with --unique 4)
//! cargo run --release -p ipscope --example calcium_bench -- --wells 96 --frames 1000 --size 256
//! # short mode (CI)
//! cargo run --release -p ipscope --example calcium_bench -- --wells 8 --frames 200 --size 64
//! ```

use std::path::Path;
use std::time::Instant;

use ipscope::core::assays::calcium::{model_transient, CalciumParams};
use ipscope::io::timelapse::{series, FrameReader, StackWriter};
use ipscope::io::{DiscoverOptions, ReadOptions};
use ipscope::timelapse_run::analyze_series;
use rayon::prelude::*;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_stack(path: &Path, size: usize, frames: usize, fps: f64, seed: u64) {
    let mut w = StackWriter::create(path, size, size, frames, Some(1.0 / fps)).expect("create");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u16; size * size];
    for f in 0..frames {
        let t = f as f64 / fps;
        let y = model_transient((t - 0.2).rem_euclid(1.0), 0.03, 0.15);
        for (i, px) in buf.iter_mut().enumerate() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let (r, c) = (i / size, i % size);
            let cell = ((r / 16 + c / 16) % 2 == 0) as u32 as f64;
            let v = 300.0 + cell * 1200.0 * (1.0 + y) + (state % 41) as f64 - 20.0;
            *px = v as u16;
        }
        w.write_frame(&buf).expect("write frame");
    }
    w.finish().expect("finish");
}

fn main() {
    let wells = arg("--wells", 96);
    let frames = arg("--frames", 1000);
    let size = arg("--size", 256);
    let unique = arg("--unique", 4).clamp(1, wells.max(1));
    let repeat = arg("--repeat", 1).max(1);
    let fps = 50.0;
    let tmp = tempfile::tempdir().expect("tempdir");
    // `--dir D` writes the plate to D once and reuses it (for profiling the read passes).
    let args: Vec<String> = std::env::args().collect();
    let kept = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(dir).expect("plate folder");
    let t0 = Instant::now();
    for k in 0..wells {
        let (row, col) = (k / 12, k % 12 + 1);
        let name = format!("BENCH_{}{col:02}_s1_w1.tif", (b'A' + row as u8) as char);
        let path = dir.join(&name);
        if kept.is_some() && path.exists() {
            continue;
        }
        if k < unique {
            write_stack(&path, size, frames, fps, k as u64 + 1);
            // On disk before timing starts: write-back of the fresh pages would otherwise
            // run during whichever pass comes first.
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .expect("sync");
        } else {
            let src = std::fs::read_dir(dir)
                .expect("dir")
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "tif"))
                .nth(k % unique)
                .expect("a written stack");
            std::fs::hard_link(&src, &path).expect("hard link");
        }
    }
    eprintln!(
        "wrote {wells} wells × {frames} frames × {size}² ({unique} distinct stacks) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let plate = ipscope::io::discover(dir, &DiscoverOptions::default()).expect("discover");
    let all = series(&plate, "w1").expect("series");
    let read = ReadOptions::default();
    let decode = || {
        let t = Instant::now();
        let pages: usize = all
            .par_iter()
            .map(|s| {
                let mut r = FrameReader::open(s, &read).expect("open");
                let mut n = 0;
                while let Some(f) = r.next_frame().expect("frame") {
                    n += f.width.min(1);
                }
                n
            })
            .sum();
        (t.elapsed().as_secs_f64(), pages)
    };
    println!(
        "calcium_bench: {wells} wells x {frames} frames x {size}^2 on {} threads",
        rayon::current_num_threads()
    );
    let params = CalciumParams::default();
    // `--analyse-only` (for profiling): the analysis pass alone, no decode pass, no ratio.
    if args.iter().any(|a| a == "--analyse-only") {
        let t = Instant::now();
        all.par_iter().for_each(|s| {
            analyze_series(s, 1.0 / fps, &params, &read).expect("analyse");
        });
        println!("  analyse     : {:.3} s", t.elapsed().as_secs_f64());
        return;
    }
    // `--decode-only` (for profiling): the decode pass alone.
    if args.iter().any(|a| a == "--decode-only") {
        println!("  decode only : {:.3} s", decode().0);
        return;
    }
    let mut ratios = Vec::new();
    for run in 1..=repeat {
        if repeat > 1 {
            println!("run {run} of {repeat}");
        }
        let (d1, pages) = decode();
        let t = Instant::now();
        let beats: usize = all
            .par_iter()
            .map(|s| {
                analyze_series(s, 1.0 / fps, &params, &read)
                    .expect("analyse")
                    .analysis
                    .beats
                    .len()
            })
            .sum();
        let analyse = t.elapsed().as_secs_f64();
        let (d2, _) = decode();
        let decode_s = d1.min(d2);
        let mpx = (pages * size * size) as f64 / 1e6;
        println!(
            "  decode only : {decode_s:.3} s ({:.0} Mpx/s, {pages} pages)",
            mpx / decode_s
        );
        println!(
            "  analyse     : {analyse:.3} s ({:.0} Mpx/s, {beats} beats)",
            mpx / analyse
        );
        println!(
            "  speed ratio (decode time / analysis time): {:.2} (target >= 0.70)",
            decode_s / analyse
        );
        ratios.push(decode_s / analyse);
    }
    if repeat > 1 {
        ratios.sort_by(f64::total_cmp);
        let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "median ratio of {repeat} runs: {:.2} (sorted: {})",
            ratios[repeat / 2],
            list.join(", ")
        );
    }
}

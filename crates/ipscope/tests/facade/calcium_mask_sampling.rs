//! The beating region from 50 evenly spaced frames of the window (the default
//! `mask_frames`) against the region from every frame of it: on the calcium demo plate
//! (photobleaching, noise, motion, EADs, irregular, asynchronous and arrested wells) the
//! per-well readouts agree far inside the truth tolerances (rate 2 %, CTD90 5 %).

use ipscope::core::assays::calcium::CalciumParams;
use ipscope::demo_calcium::{self, CalciumDemoParams};
use ipscope::io::timelapse::series;
use ipscope::io::{DiscoverOptions, ReadOptions};
use ipscope::timelapse_run::analyze_series;

fn rel(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => (a / b - 1.0).abs(),
        (None, None) => 0.0,
        _ => f64::INFINITY,
    }
}

#[test]
fn sampled_beating_region_gives_the_readouts_of_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = demo_calcium::generate(tmp.path(), &CalciumDemoParams::default()).unwrap();
    let plate = ipscope::io::discover(tmp.path(), &DiscoverOptions::default()).unwrap();
    let all = series(&plate, &demo.channels[0].0).unwrap();
    assert!(all.len() >= 10, "{} series", all.len());
    let sampled = CalciumParams::default();
    let every = CalciumParams {
        mask_frames: usize::MAX,
        ..CalciumParams::default()
    };
    let dt = 1.0 / demo.fps;
    let read = ReadOptions::default();
    let (mut worst_rate, mut worst_ctd, mut worst_fraction) = (0.0f64, 0.0f64, 0.0f64);
    for s in &all {
        let a = analyze_series(s, dt, &sampled, &read).unwrap();
        let b = analyze_series(s, dt, &every, &read).unwrap();
        let (sa, sb) = (&a.analysis.summary, &b.analysis.summary);
        let name = s.path().display().to_string();
        assert_eq!(sa.beat_count, sb.beat_count, "{name}");
        assert_eq!(sa.ead_count, sb.ead_count, "{name}");
        assert_eq!(
            (sa.irregular, sa.arrest),
            (sb.irregular, sb.arrest),
            "{name}"
        );
        worst_rate = worst_rate.max(rel(sa.beat_rate_bpm, sb.beat_rate_bpm));
        worst_ctd = worst_ctd.max(rel(sa.ctd90_mean, sb.ctd90_mean));
        worst_fraction = worst_fraction.max((a.mask_fraction - b.mask_fraction).abs());
    }
    eprintln!(
        "{} series: worst rate difference {worst_rate:.2e}, CTD90 {worst_ctd:.2e}, \
         beating fraction {worst_fraction:.3}",
        all.len()
    );
    assert!(worst_rate < 0.002, "rate {worst_rate}");
    assert!(worst_ctd < 0.005, "CTD90 {worst_ctd}");
    assert!(worst_fraction < 0.02, "beating fraction {worst_fraction}");
}

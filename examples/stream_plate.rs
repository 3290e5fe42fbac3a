//! Streams a plate through the pipeline and prints per-field nucleus counts and the mean
//! OCT4 intensity, without writing any files.
//!
//! ```sh
//! cargo run --release -- demo ipscope-demo
//! cargo run --release --example stream_plate -p ipscope -- ipscope-demo
//! ```

use ipscope::table::column_f64;
use ipscope::{Pipeline, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ipscope-demo".into());
    let mut options = RunOptions::new(&dir);
    options.channels = vec![
        ("w1".into(), "Hoechst".into()),
        ("w2".into(), "OCT4".into()),
    ];
    let pipeline = Pipeline::new(options)?;
    println!(
        "plate {}: {} fields",
        pipeline.plate().id,
        pipeline.field_count()
    );
    for field in pipeline.stream() {
        let r = &field.record;
        if let Some(f) = &r.failure {
            println!(
                "{} s{}: failed at {}: {}",
                r.well, r.site, f.stage, f.message
            );
            continue;
        }
        let oct4 = column_f64(&field.nuclei, "Nuclei_Intensity_MeanIntensity_OCT4")?;
        let mean = oct4.values().iter().sum::<f64>() / oct4.len().max(1) as f64;
        println!(
            "{} s{}: {:4} nuclei, mean OCT4 {:.4}",
            r.well,
            r.site,
            field.nuclei.num_rows(),
            mean
        );
    }
    Ok(())
}

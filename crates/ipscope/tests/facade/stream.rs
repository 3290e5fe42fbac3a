//! The library's streaming API: `Pipeline::stream()` and `Pipeline::for_each_field` give the
//! fields in ImageNumber order with the same rows as a one-thread stream, and
//! `for_each_field` keeps the fields in flight bounded (at most 2 × threads ahead of the
//! last one handed over) instead of processing the plate before handing anything over.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ipscope::core::backend::{Backend, CpuBackend};
use ipscope::core::ops::label::Connectivity;
use ipscope::core::ops::measure::ObjectShape;
use ipscope::core::ops::threshold::Histogram;
use ipscope::core::Error;
use ipscope::image::{Image, ImageView, Labels};
use ipscope::pipeline::SharedBackend;
use ipscope::{FieldOutput, Pipeline, RunOptions};

/// The CPU reference, counting the Gaussians asked of it (a field asks the same number).
struct Counting(AtomicUsize);

impl Backend for Counting {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn gaussian_blur(&self, i: ImageView<f32>, s: f32) -> Result<Image<f32>, Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        CpuBackend.gaussian_blur(i, s)
    }
    fn histogram(&self, i: ImageView<f32>, n: usize) -> Result<Option<Histogram>, Error> {
        CpuBackend.histogram(i, n)
    }
    fn binary_erosion(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
        CpuBackend.binary_erosion(m)
    }
    fn binary_dilation(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
        CpuBackend.binary_dilation(m)
    }
    fn fill_holes(&self, m: ImageView<bool>) -> Result<Image<bool>, Error> {
        CpuBackend.fill_holes(m)
    }
    fn distance_transform_edt(&self, m: ImageView<bool>) -> Result<Image<f32>, Error> {
        CpuBackend.distance_transform_edt(m)
    }
    fn label(&self, m: ImageView<bool>, c: Connectivity) -> Result<Labels, Error> {
        CpuBackend.label(m, c)
    }
    fn measure_shape(&self, l: &Labels) -> Result<Vec<ObjectShape>, Error> {
        CpuBackend.measure_shape(l)
    }
}

fn key(f: &FieldOutput) -> (u32, String, usize) {
    (
        f.record.image_number,
        f.record.well.clone(),
        f.nuclei.num_rows(),
    )
}

#[test]
fn stream_and_for_each_field_give_the_one_thread_rows_in_order_with_bounded_flight() {
    let dir = tempfile::tempdir().unwrap();
    let params = ipscope::demo::DemoParams {
        sites: 1,
        size: 96,
        ..Default::default()
    };
    let demo = ipscope::demo::generate(dir.path(), &params).unwrap();
    let options = |threads: usize, backend: Option<SharedBackend>| {
        let mut o = RunOptions::new(&demo.dir);
        o.channels = demo.channels.clone();
        o.threads = Some(threads);
        o.backend = backend;
        o
    };
    let want: Vec<FieldOutput> = Pipeline::new(options(1, None)).unwrap().stream().collect();
    assert!(want.len() > 20, "{} fields", want.len());
    assert!(want
        .windows(2)
        .all(|w| w[0].record.image_number < w[1].record.image_number));
    assert!(want.iter().any(|f| f.nuclei.num_rows() > 0));

    let threads = 2;
    let got: Vec<FieldOutput> = Pipeline::new(options(threads, None))
        .unwrap()
        .stream()
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(key(g), key(w));
        assert!(
            g.nuclei == w.nuclei,
            "field {}: nuclei rows differ",
            g.record.image_number
        );
    }

    // for_each_field: the same rows; at each hand-over, the fields whose segmentation has
    // started (Gaussians asked / Gaussians per field, rounded up) are at most 2 × threads
    // ahead of the fields handed over. Processing the plate first would start them all.
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let pipeline = Pipeline::new(options(threads, Some(SharedBackend(counting.clone())))).unwrap();
    let mut seen: Vec<(usize, usize)> = Vec::new(); // (handed before, Gaussians so far)
    let mut streamed = Vec::new();
    let n = pipeline.for_each_field(|f| {
        seen.push((streamed.len(), counting.0.load(Ordering::SeqCst)));
        streamed.push(f);
        ControlFlow::Continue(())
    });
    assert_eq!(n, want.len());
    let total = counting.0.load(Ordering::SeqCst);
    let per_field = total / want.len();
    assert!(
        per_field >= 1 && per_field * want.len() == total,
        "{total} Gaussians"
    );
    for (&(handed, gaussians), f) in seen.iter().zip(&streamed) {
        let started = gaussians.div_ceil(per_field);
        assert!(
            started <= handed + 1 + 2 * threads,
            "field {}: {started} fields started with {handed} handed over",
            f.record.image_number
        );
    }
    for (g, w) in streamed.iter().zip(&want) {
        assert_eq!(key(g), key(w));
        assert!(
            g.nuclei == w.nuclei,
            "field {}: nuclei rows differ",
            g.record.image_number
        );
    }

    // A break stops the workers after their current fields.
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let pipeline = Pipeline::new(options(threads, Some(SharedBackend(counting.clone())))).unwrap();
    let mut first = Vec::new();
    let n = pipeline.for_each_field(|f| {
        first.push(f.record.image_number);
        if first.len() == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(n, 3);
    assert_eq!(first, [1, 2, 3]);
    let started = counting.0.load(Ordering::SeqCst).div_ceil(per_field);
    assert!(
        started <= 3 + 2 * threads,
        "{started} fields started after a break at 3"
    );
}

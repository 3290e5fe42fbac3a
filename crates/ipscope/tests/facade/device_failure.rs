//! A device that fails on one field (lost, out of memory, field too large) fails that field
//! only: the failure is recorded for it, and every other field is measured exactly as on the
//! CPU. The failing device is the CPU reference behind the `Backend` trait with one call
//! turned into the error a GPU returns, so the test runs without a GPU.

use std::sync::{Arc, Mutex};

use ipscope::core::backend::{Backend, CpuBackend};
use ipscope::core::ops::label::Connectivity;
use ipscope::core::ops::measure::ObjectShape;
use ipscope::core::ops::threshold::Histogram;
use ipscope::core::Error;
use ipscope::image::{Image, ImageView, Labels};
use ipscope::pipeline::SharedBackend;
use ipscope::{Pipeline, RunOptions, Status};

/// The CPU reference, except that the `fail_at`-th Gaussian reports a lost device.
struct LosesDevice {
    gaussians: Mutex<usize>,
    fail_at: usize,
}

const MESSAGE: &str = "device lost during gaussian.wgsl: test";

impl Backend for LosesDevice {
    fn name(&self) -> String {
        "gpu: test device (loses itself once)".into()
    }
    fn gaussian_blur(&self, i: ImageView<f32>, s: f32) -> Result<Image<f32>, Error> {
        let n = {
            let mut g = self.gaussians.lock().unwrap();
            *g += 1;
            *g
        };
        if n == self.fail_at {
            return Err(Error::Backend {
                device: "gpu test device".into(),
                message: MESSAGE.into(),
            });
        }
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

#[test]
fn a_device_failure_fails_its_field_only() {
    let dir = tempfile::tempdir().unwrap();
    let params = ipscope::demo::DemoParams {
        sites: 1,
        size: 128,
        ..Default::default()
    };
    let demo = ipscope::demo::generate(dir.path(), &params).unwrap();
    let options = |backend: Option<SharedBackend>| {
        let mut o = RunOptions::new(&demo.dir);
        o.channels = demo.channels.clone();
        o.threads = Some(1);
        o.backend = backend;
        o
    };
    let cpu = Pipeline::new(options(None)).unwrap();
    assert_eq!(cpu.device(), "cpu");
    let want: Vec<_> = cpu.stream().collect();

    // Count the Gaussians a field asks of the backend (the nuclei's smoothing and the
    // declumping's) with a device that never fails.
    let counting = Arc::new(LosesDevice {
        gaussians: Mutex::new(0),
        fail_at: usize::MAX,
    });
    let counted: Vec<_> = Pipeline::new(options(Some(SharedBackend(counting.clone()))))
        .unwrap()
        .stream()
        .collect();
    assert_eq!(counted.len(), want.len());
    let total = *counting.gaussians.lock().unwrap();
    let per_field = total / want.len();
    assert!(
        per_field >= 1 && per_field * want.len() == total,
        "{total} Gaussians"
    );

    // One worker thread: fields are segmented in ImageNumber order, so the first Gaussian
    // of the 5th field is call 4 × per_field + 1.
    let failing = Arc::new(LosesDevice {
        gaussians: Mutex::new(0),
        fail_at: 4 * per_field + 1,
    });
    let pipeline = Pipeline::new(options(Some(SharedBackend(failing)))).unwrap();
    assert_eq!(pipeline.device(), "gpu: test device (loses itself once)");
    let got: Vec<_> = pipeline.stream().collect();

    assert_eq!(got.len(), want.len());
    assert!(want.len() > 5);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.record.image_number, w.record.image_number);
        assert_eq!(w.record.status, Status::Ok);
        if g.record.image_number == 5 {
            assert_eq!(g.record.status, Status::Failed);
            let f = g.record.failure.as_ref().unwrap();
            assert_eq!(f.stage, "segment");
            assert_eq!(f.message, format!("gpu test device: {MESSAGE}"));
            // The failing field's DNA image is named (w1 is the demo's nuclear stain).
            assert!(f.file.contains("w1"), "{}", f.file);
            assert_eq!(g.nuclei.num_rows(), 0);
        } else {
            assert_eq!(
                g.record.status,
                Status::Ok,
                "field {}",
                g.record.image_number
            );
            assert!(w.nuclei.num_rows() > 0);
            assert_eq!(g.nuclei, w.nuclei, "field {}", g.record.image_number);
        }
    }
}

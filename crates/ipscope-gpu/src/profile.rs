//! GPU time per kernel from timestamp queries, for benchmarks.
//!
//! When the adapter has `TIMESTAMP_QUERY`, [`Gpu::set_profiling`] makes every dispatch write
//! a timestamp at the beginning and end of its compute pass; each submission resolves them
//! and [`Gpu::take_profile`] returns the summed compute time per kernel entry point. This
//! is the device's own clock: it excludes uploads, readbacks, host work and the gaps between
//! passes, so it says what the kernels cost apart from the transfers that wall-clock timing
//! includes. Profiling is meant for one thread at a time (a benchmark): dispatches from
//! several threads between two submissions would be attributed to whichever submits first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::device::Gpu;

/// Timestamp pairs one submission can hold (a query set holds at most 4096 queries); passes
/// beyond it are counted as untimed.
const CAPACITY: u32 = 2048;

/// Compute time of one kernel entry point, summed over its passes.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// Kernel file stem (`gaussian`, `label`, ...).
    pub kernel: &'static str,
    /// Entry point (`columns`, `propagate`, ...).
    pub entry: &'static str,
    /// Compute passes (dispatches) timed.
    pub passes: u64,
    /// Their summed GPU time, in milliseconds.
    pub gpu_ms: f64,
}

#[derive(Default)]
struct State {
    enabled: bool,
    /// Entry of each timestamp pair written since the last submission.
    pending: Vec<(&'static str, &'static str)>,
    totals: BTreeMap<(&'static str, &'static str), (u64, f64)>,
    untimed: u64,
}

/// The query set and its resolve buffer; present when the adapter has `TIMESTAMP_QUERY`.
pub(crate) struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
    state: Mutex<State>,
}

/// Timestamps of one submission on their way back: the staging buffer and its entries.
pub(crate) struct InFlight {
    staging: wgpu::Buffer,
    entries: Vec<(&'static str, &'static str)>,
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("ipscope timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * CAPACITY,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ipscope timestamps resolve"),
            size: u64::from(2 * CAPACITY) * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Profiler {
            set,
            resolve,
            period_ns: f64::from(queue.get_timestamp_period()),
            state: Mutex::new(State::default()),
        }
    }

    /// The timestamp writes for the next pass of `kernel.entry`, or `None` when profiling
    /// is off (or this submission's slots are used up).
    pub(crate) fn next(
        &self,
        kernel: &'static str,
        entry: &'static str,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let mut s = self.state.lock().ok()?;
        if !s.enabled {
            return None;
        }
        if s.pending.len() as u32 >= CAPACITY {
            s.untimed += 1;
            return None;
        }
        let i = 2 * s.pending.len() as u32;
        s.pending.push((kernel, entry));
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(i),
            end_of_pass_write_index: Some(i + 1),
        })
    }

    /// Resolves this submission's timestamps into `enc` and copies them to a staging buffer.
    pub(crate) fn resolve(
        &self,
        device: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
    ) -> Option<InFlight> {
        let entries = std::mem::take(&mut self.state.lock().ok()?.pending);
        if entries.is_empty() {
            return None;
        }
        let n = 2 * entries.len() as u32;
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ipscope timestamps readback"),
            size: u64::from(n) * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.resolve_query_set(&self.set, 0..n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &staging, 0, u64::from(n) * 8);
        Some(InFlight { staging, entries })
    }

    /// Adds a submitted batch's pass times to the totals (after the submission finished).
    pub(crate) fn collect(&self, device: &wgpu::Device, done: InFlight) {
        let slot = Arc::new(Mutex::new(None));
        let s2 = Arc::clone(&slot);
        done.staging.map_async(wgpu::MapMode::Read, .., move |r| {
            if let Ok(mut d) = s2.lock() {
                *d = Some(r.is_ok());
            }
        });
        if device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
            return;
        }
        if slot.lock().map(|s| *s != Some(true)).unwrap_or(true) {
            return;
        }
        let Ok(view) = done.staging.get_mapped_range(..) else {
            return;
        };
        let ticks: Vec<u64> = view
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        drop(view);
        done.staging.unmap();
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        for (pair, &key) in ticks.chunks_exact(2).zip(&done.entries) {
            let ns = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
            let t = s.totals.entry(key).or_insert((0, 0.0));
            t.0 += 1;
            t.1 += ns / 1e6;
        }
    }
}

impl Gpu {
    /// Whether the adapter can time kernels with timestamp queries (`TIMESTAMP_QUERY`).
    pub fn timestamps_supported(&self) -> bool {
        self.profiler.is_some()
    }

    /// Turns per-kernel GPU timing on or off (see [`Gpu::take_profile`]); returns whether
    /// timing is on (false when the adapter has no timestamp queries).
    pub fn set_profiling(&self, on: bool) -> bool {
        match &self.profiler {
            Some(p) => match p.state.lock() {
                Ok(mut s) => {
                    s.enabled = on;
                    on
                }
                Err(_) => false,
            },
            None => false,
        }
    }

    /// The GPU time of each kernel entry point since the last call (in kernel, entry
    /// order), and how many passes went untimed (more than one submission holds); resets
    /// both.
    pub fn take_profile(&self) -> (Vec<KernelTime>, u64) {
        let Some(p) = &self.profiler else {
            return (Vec::new(), 0);
        };
        let Ok(mut s) = p.state.lock() else {
            return (Vec::new(), 0);
        };
        let times = std::mem::take(&mut s.totals)
            .into_iter()
            .map(|((kernel, entry), (passes, gpu_ms))| KernelTime {
                kernel,
                entry,
                passes,
                gpu_ms,
            })
            .collect();
        (times, std::mem::take(&mut s.untimed))
    }
}

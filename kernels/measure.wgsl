// Per-object reductions for measurements (ipscope_core::ops::measure::measure_shape and
// measure_intensity): area, sums of rows and columns (centroid), bounding box, and the sum,
// minimum and maximum of integer intensities (u8/u16 samples as stored). All integer
// atomics, so every value is exact regardless of the order in which pixels are visited;
// 64-bit sums are kept as two u32 words with an explicit carry.

// `height` rows of the band starting at image row `row0` (images larger than one storage
// binding are reduced band by band into the same accumulator).
struct Params {
    width: u32,
    height: u32,
    count: u32,
    row0: u32,
}

// Per object (label l at index l - 1), 13 words:
// 0 area, 1-2 sum row (lo, hi), 3-4 sum col, 5 min row, 6 min col, 7 max row + 1,
// 8 max col + 1, 9-10 sum intensity, 11 min intensity, 12 max intensity.
const STRIDE: u32 = 13u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> intensity: array<u32>;
@group(0) @binding(3) var<storage, read_write> acc: array<atomic<u32>>;

fn add64(at: u32, v: u32) {
    let old = atomicAdd(&acc[at], v);
    if (old > 0xffffffffu - v) {
        atomicAdd(&acc[at + 1u], 1u);
    }
}

@compute @workgroup_size(16, 16)
fn reduce(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let l = labels[i];
    if (l == 0u || l > p.count) {
        return;
    }
    let b = (l - 1u) * STRIDE;
    let v = intensity[i];
    let row = id.y + p.row0;
    atomicAdd(&acc[b], 1u);
    add64(b + 1u, row);
    add64(b + 3u, id.x);
    atomicMin(&acc[b + 5u], row);
    atomicMin(&acc[b + 6u], id.x);
    atomicMax(&acc[b + 7u], row + 1u);
    atomicMax(&acc[b + 8u], id.x + 1u);
    add64(b + 9u, v);
    atomicMin(&acc[b + 11u], v);
    atomicMax(&acc[b + 12u], v);
}

// The size filter (ipscope_core::ops::label::filter_by_area) on the GPU.
//
// `areas` counts each label's pixels and finds its first pixel in raster order (integer
// atomics, so exact whatever order the pixels are visited in). The host keeps the labels
// whose area lies in the range and numbers them in order of first pixel, as the CPU
// reference numbers them, and `remap` writes that number for every pixel.

// `height` rows of the band starting at image row `row0` (labels larger than one storage
// binding are processed band by band); `max_label` is the largest label that may occur.
struct Params {
    width: u32,
    height: u32,
    max_label: u32,
    row0: u32,
}

// Per label l in 0..=max_label, 2 words: 0 area, 1 raster index of its first pixel
// (u32::MAX while absent).
const STRIDE: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> acc: array<atomic<u32>>;
// New label of each old one (0: removed).
@group(0) @binding(3) var<storage, read> lut: array<u32>;
@group(0) @binding(4) var<storage, read_write> relabelled: array<u32>;

@compute @workgroup_size(16, 16)
fn areas(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let l = labels[id.y * p.width + id.x];
    if (l == 0u || l > p.max_label) {
        return;
    }
    let b = l * STRIDE;
    atomicAdd(&acc[b], 1u);
    atomicMin(&acc[b + 1u], (id.y + p.row0) * p.width + id.x);
}

@compute @workgroup_size(16, 16)
fn remap(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let l = labels[i];
    var v = 0u;
    if (l <= p.max_label) {
        v = lut[l];
    }
    relabelled[i] = v;
}

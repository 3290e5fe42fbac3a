// The steps of a resident segmentation (`Gpu::segment_otsu`) that no other kernel has: the
// threshold of the smoothed field, and the size filter over union-find labels that still
// carry their component's first pixel (`label.wgsl`: raster index + 1), so that the labels
// need not come back to the host to be numbered before they are filtered.
//
// `threshold` writes the mask `field > t` (ipscope_core: `smoothed.map(|v| v > t)`).
// `root_areas` counts each component's pixels at its first pixel's index. `number` gives
// every kept component (area in [lo, hi]) an id from a counter and records its first pixel
// there; the order of the ids depends on scheduling, but the host sorts the first pixels and
// uploads each id's number in raster order of first pixel (as `filter_by_area` numbers them),
// so the result does not. `remap` writes those numbers. Integer logic only: exact.

struct Params {
    width: u32,
    height: u32,
    // `threshold`: the threshold's f32 bits; `number`: the smallest area kept.
    a: u32,
    // `number`: the largest area kept.
    b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// `threshold`: the smoothed field's f32 bits; the others: the union-find labels.
@group(0) @binding(1) var<storage, read> src: array<u32>;
// Per pixel index: the area of the component first met there, then (after `number`) its id
// (0: not kept).
@group(0) @binding(2) var<storage, read_write> acc: array<atomic<u32>>;
// Word 0 counts the ids handed out; word k holds id k's first pixel.
@group(0) @binding(3) var<storage, read_write> firsts: array<atomic<u32>>;
// Per id, its number in raster order of first pixel.
@group(0) @binding(4) var<storage, read> rank: array<u32>;
// `threshold`: the mask, one u32 per pixel; `remap`: the numbered labels.
@group(0) @binding(5) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(16, 16)
fn threshold(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    // A NaN compares false, as on the CPU.
    dst[i] = select(0u, 1u, bitcast<f32>(src[i]) > bitcast<f32>(p.a));
}

@compute @workgroup_size(16, 16)
fn root_areas(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let r = src[id.y * p.width + id.x];
    if (r != 0u) {
        atomicAdd(&acc[r - 1u], 1u);
    }
}

@compute @workgroup_size(16, 16)
fn number(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    if (src[i] != i + 1u) {
        return;
    }
    // Only this invocation touches acc[i] in this pass: the component's own first pixel.
    let area = atomicLoad(&acc[i]);
    var k = 0u;
    if (area >= p.a && area <= p.b) {
        k = atomicAdd(&firsts[0], 1u) + 1u;
        if (k < arrayLength(&firsts)) {
            atomicStore(&firsts[k], i);
        }
    }
    atomicStore(&acc[i], k);
}

@compute @workgroup_size(16, 16)
fn remap(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let r = src[i];
    var v = 0u;
    if (r != 0u) {
        let k = atomicLoad(&acc[r - 1u]);
        if (k != 0u && k < arrayLength(&rank)) {
            v = rank[k];
        }
    }
    dst[i] = v;
}

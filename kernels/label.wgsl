// Connected-component labelling by iterative minimum-label propagation with pointer
// jumping (cf. O. Kalentev et al., "Connected component labeling on a 2D grid using
// CUDA", J. Parallel Distrib. Comput. 71 (2011)). `init` gives every foreground pixel its
// own index + 1; `propagate` lowers each pixel to the smallest label among itself, its
// neighbours (4- or 8-connected) and the label its label points at, until a pass changes
// nothing. Each component then carries the index + 1 of its first pixel in raster order,
// so numbering the distinct values in raster order gives exactly the CPU's labels
// (ipscope_core::ops::label::label). Atomics keep concurrent reads and writes defined.
// With `invert` set, the zero pixels of `mask` are the ones labelled (hole filling labels
// the background, see holes.wgsl).

struct Params {
    width: u32,
    height: u32,
    eight: u32,
    invert: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> lab: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> changed: atomic<u32>;

@compute @workgroup_size(16, 16)
fn init(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    var v = 0u;
    if ((mask[i] != 0u) != (p.invert != 0u)) {
        v = i + 1u;
    }
    atomicStore(&lab[i], v);
}

fn neighbour(x: i32, y: i32, best: u32) -> u32 {
    if (x < 0 || y < 0 || x >= i32(p.width) || y >= i32(p.height)) {
        return best;
    }
    let l = atomicLoad(&lab[u32(y) * p.width + u32(x)]);
    if (l != 0u && l < best) {
        return l;
    }
    return best;
}

@compute @workgroup_size(16, 16)
fn propagate(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let own = atomicLoad(&lab[i]);
    if (own == 0u) {
        return;
    }
    let x = i32(id.x);
    let y = i32(id.y);
    var best = own;
    best = neighbour(x - 1, y, best);
    best = neighbour(x + 1, y, best);
    best = neighbour(x, y - 1, best);
    best = neighbour(x, y + 1, best);
    if (p.eight != 0u) {
        best = neighbour(x - 1, y - 1, best);
        best = neighbour(x + 1, y - 1, best);
        best = neighbour(x - 1, y + 1, best);
        best = neighbour(x + 1, y + 1, best);
    }
    // Pointer jumping: the pixel a label names lies in the same component and holds a
    // label no larger than its own.
    for (var hop = 0u; hop < 8u; hop = hop + 1u) {
        let next = atomicLoad(&lab[best - 1u]);
        if (next >= best) {
            break;
        }
        best = next;
    }
    if (best < own) {
        atomicMin(&lab[i], best);
        atomicStore(&changed, 1u);
    }
}

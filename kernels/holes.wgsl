// Hole filling (ipscope_core::ops::morphology::fill_holes) from a labelling of the
// background: `label.wgsl` with `invert` labels the background's 4-connected components
// (scipy's cross), each carrying the index + 1 of its first pixel; a component that reaches
// the image border is open, every other one is a hole. `open_border` marks the open
// components, `fill` writes the filled mask: 1 except on open background. Integer logic
// only, so the result is exact; a handful of passes instead of a flood that moves one pixel
// per step.

struct Params {
    width: u32,
    height: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The background's converged labels (0 on the mask).
@group(0) @binding(1) var<storage, read> lab: array<u32>;
// One flag per pixel index: 1 where the component rooted there is open.
@group(0) @binding(2) var<storage, read_write> open: array<atomic<u32>>;
// The filled mask, one u32 per pixel.
@group(0) @binding(3) var<storage, read_write> filled: array<u32>;

@compute @workgroup_size(16, 16)
fn open_border(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    if (id.x != 0u && id.y != 0u && id.x + 1u != p.width && id.y + 1u != p.height) {
        return;
    }
    let l = lab[id.y * p.width + id.x];
    if (l != 0u) {
        atomicStore(&open[l - 1u], 1u);
    }
}

@compute @workgroup_size(16, 16)
fn fill(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let l = lab[i];
    var v = 1u;
    if (l != 0u && atomicLoad(&open[l - 1u]) != 0u) {
        v = 0u;
    }
    filled[i] = v;
}

// Binary morphology with the 4-connected cross (ipscope_core::ops::morphology): erosion and
// dilation with pixels outside the image as background, and hole filling as a flood of the
// background from the border, iterated until nothing changes. Masks are one u32 per pixel
// (0 or 1). Integer logic only, so results are exact.

struct Params {
    width: u32,
    height: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<atomic<u32>>;
// Set to 1 by `flood` when a pixel changed.
@group(0) @binding(3) var<storage, read_write> changed: atomic<u32>;

fn at(x: i32, y: i32) -> u32 {
    if (x < 0 || y < 0 || x >= i32(p.width) || y >= i32(p.height)) {
        return 0u;
    }
    return src[u32(y) * p.width + u32(x)];
}

@compute @workgroup_size(16, 16)
fn erode(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let x = i32(id.x);
    let y = i32(id.y);
    let v = at(x, y) & at(x - 1, y) & at(x + 1, y) & at(x, y - 1) & at(x, y + 1);
    atomicStore(&dst[id.y * p.width + id.x], v);
}

@compute @workgroup_size(16, 16)
fn dilate(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let x = i32(id.x);
    let y = i32(id.y);
    let v = at(x, y) | at(x - 1, y) | at(x + 1, y) | at(x, y - 1) | at(x, y + 1);
    atomicStore(&dst[id.y * p.width + id.x], v);
}

fn outside(x: i32, y: i32) -> u32 {
    if (x < 0 || y < 0 || x >= i32(p.width) || y >= i32(p.height)) {
        return 1u;
    }
    return atomicLoad(&dst[u32(y) * p.width + u32(x)]);
}

// One step of the border flood: `src` is the mask, `dst` the "reached from the border"
// map (starts all 0). A background pixel joins when a 4-neighbour (or the frame) has.
@compute @workgroup_size(16, 16)
fn flood(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    if (src[i] != 0u || atomicLoad(&dst[i]) != 0u) {
        return;
    }
    let x = i32(id.x);
    let y = i32(id.y);
    if ((outside(x - 1, y) | outside(x + 1, y) | outside(x, y - 1) | outside(x, y + 1)) != 0u) {
        atomicStore(&dst[i], 1u);
        atomicStore(&changed, 1u);
    }
}

// Hole filling's result from a finished flood, left on the device for the next stages: here
// `src` is the flood's "reached from the border" map and `dst` receives the filled mask (a
// pixel is in it unless the flood reached it: the mask itself and its holes).
@compute @workgroup_size(16, 16)
fn fill_from_flood(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    atomicStore(&dst[i], 1u - min(src[i], 1u));
}

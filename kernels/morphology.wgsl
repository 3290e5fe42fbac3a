// Binary morphology with the 4-connected cross (ipscope_core::ops::morphology): erosion and
// dilation with pixels outside the image as background (hole filling is holes.wgsl). Masks
// are one u32 per pixel (0 or 1). Integer logic only, so results are exact. `pack` packs a
// mask 32 pixels to a word for its readback (bit b of word k: pixel 32k + b, raster order);
// `unpack` expands a mask uploaded in that layout to one u32 per pixel (1/32 of the upload).

struct Params {
    width: u32,
    height: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<atomic<u32>>;

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

@compute @workgroup_size(256)
fn pack(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let k = gid.x + gid.y * groups.x * 256u;
    let n = p.width * p.height;
    if (k * 32u >= n) {
        return;
    }
    var word = 0u;
    for (var b = 0u; b < 32u; b = b + 1u) {
        let i = k * 32u + b;
        if (i < n && src[i] != 0u) {
            word = word | (1u << b);
        }
    }
    atomicStore(&dst[k], word);
}

@compute @workgroup_size(16, 16)
fn unpack(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    atomicStore(&dst[i], (src[i / 32u] >> (i % 32u)) & 1u);
}

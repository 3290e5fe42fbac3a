// A 16-bit field uploaded as it is stored (two pixels to a word, the first in the low half)
// and scaled onto 0..=1 on the device: each pixel v becomes lut[v], the host's
// `unit_scale_u16(v)` for all 65,536 values, so the f32 bits are the CPU's without a
// division on the device (WGSL's is not correctly rounded). Half the upload of the f32 field.

struct Params {
    width: u32,
    height: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> lut: array<f32>;

@compute @workgroup_size(16, 16)
fn unit_u16(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let v = (packed[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
    dst[i] = lut[v];
}

// Connected-component labelling by union-find on the pixel grid (after O. Kalentev et al.,
// J. Parallel Distrib. Comput. 71 (2011), and D. P. Playne & K. Hawick, "A new algorithm for
// parallel connected-component labelling on GPUs", IEEE TPDS 29 (2018)). Labels are pixel
// index + 1 (0 is background) and each one points at a pixel of the same component with a
// smaller or equal label; a root points at itself.
//
// `init` makes every labelled pixel its own root. `merge` joins each pixel with its earlier
// neighbours (left and up; up-left and up-right when 8-connected; those a join through other
// pixels already connects are skipped): the larger of the two
// roots is linked to the smaller with atomicMin, retried until both finds meet, so one
// dispatch joins every component whatever its shape. `flatten` points every pixel at its
// root. The root is the component's smallest index, its first pixel in raster order, for
// any order the invocations run in: numbering the distinct values in raster order gives
// exactly the CPU's labels (ipscope_core::ops::label::label). With `invert` set, the zero
// pixels of `mask` are the ones labelled (hole filling labels the background, holes.wgsl).

struct Params {
    width: u32,
    height: u32,
    eight: u32,
    invert: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> lab: array<atomic<u32>>;

fn labelled(i: u32) -> bool {
    return (mask[i] != 0u) != (p.invert != 0u);
}

@compute @workgroup_size(16, 16)
fn init(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    var v = 0u;
    if (labelled(i)) {
        v = i + 1u;
    }
    atomicStore(&lab[i], v);
}

// The root of label `l` (> 0).
fn find(l: u32) -> u32 {
    var x = l;
    var up = atomicLoad(&lab[x - 1u]);
    while (up != x) {
        x = up;
        up = atomicLoad(&lab[x - 1u]);
    }
    return x;
}

fn join(a0: u32, b0: u32) {
    var a = find(a0);
    var b = find(b0);
    loop {
        if (a == b) {
            return;
        }
        if (a < b) {
            let old = atomicMin(&lab[b - 1u], a);
            if (old == b) {
                return;
            }
            b = find(old);
        } else {
            let old = atomicMin(&lab[a - 1u], b);
            if (old == a) {
                return;
            }
            a = find(old);
        }
    }
}

// Joins each pixel with the fewest earlier neighbours that keep the components whole (the
// decision tree of K. Wu, E. Otoo, K. Suzuki, Pattern Anal. Appl. 12 (2009), for 8-connected
// scans): with a, b, c the up-left, up and up-right neighbours and d the left one,
// 8-connected: b alone when it is set (a, c and d all touch b); else c, and a or else d (a
// and d touch each other); else a, or else d. 4-connected: d, and b unless a and d are both
// set (then b is joined to d through a: b joins a as its left neighbour, and d joins a, or
// is joined to it through the same rule one pixel to the left, which ends where a pixel's
// left or up-left neighbour is unset). Every skipped join is implied by joins other
// pixels make, so the components, and their roots, are those of joining every neighbour.
@compute @workgroup_size(16, 16)
fn merge(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    if (!labelled(i)) {
        return;
    }
    let me = i + 1u;
    let d = id.x > 0u && labelled(i - 1u);
    let up = i - p.width;
    var a = false;
    var b = false;
    var c = false;
    if (id.y > 0u) {
        a = id.x > 0u && labelled(up - 1u);
        b = labelled(up);
        c = id.x + 1u < p.width && labelled(up + 1u);
    }
    if (p.eight != 0u) {
        if (b) {
            join(me, up + 1u);
        } else {
            if (c) {
                join(me, up + 2u);
            }
            if (a) {
                join(me, up);
            } else if (d) {
                join(me, i);
            }
        }
    } else {
        if (d) {
            join(me, i);
        }
        if (b && !(a && d)) {
            join(me, up + 1u);
        }
    }
}

@compute @workgroup_size(16, 16)
fn flatten(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let l = atomicLoad(&lab[i]);
    if (l != 0u) {
        atomicStore(&lab[i], find(l));
    }
}

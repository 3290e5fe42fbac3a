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
//
// `local` and `seams` are the tiled alternative to `init` and `merge` (the host picks one
// pair, `Gpu::set_tiled_labelling`): `local` labels each 16 x 16 tile in workgroup memory
// (shared-memory atomics), then points every pixel at its tile component's first pixel,
// which is also that component's smallest image index (a tile's raster order is the
// image's); `seams` joins, in global memory, only the neighbours that lie in different
// tiles. `flatten` follows either pair, with the same roots.

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

const TILE: u32 = 16u;

// One tile's union-find, by index in the tile (row-major, TILE wide).
var<workgroup> tile: array<atomic<u32>, 256>;

fn tile_find(l: u32) -> u32 {
    var x = l;
    var up = atomicLoad(&tile[x]);
    while (up != x) {
        x = up;
        up = atomicLoad(&tile[x]);
    }
    return x;
}

fn tile_join(a0: u32, b0: u32) {
    var a = tile_find(a0);
    var b = tile_find(b0);
    loop {
        if (a == b) {
            return;
        }
        if (a < b) {
            let old = atomicMin(&tile[b], a);
            if (old == b) {
                return;
            }
            b = tile_find(old);
        } else {
            let old = atomicMin(&tile[a], b);
            if (old == a) {
                return;
            }
            a = tile_find(old);
        }
    }
}

@compute @workgroup_size(16, 16)
fn local(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let inside = id.x < p.width && id.y < p.height;
    let t = lid.y * TILE + lid.x;
    let i = id.y * p.width + id.x;
    var on = false;
    if (inside) {
        on = labelled(i);
    }
    atomicStore(&tile[t], t);
    workgroupBarrier();
    if (on) {
        if (lid.x > 0u && labelled(i - 1u)) {
            tile_join(t, t - 1u);
        }
        if (lid.y > 0u) {
            let up = i - p.width;
            if (labelled(up)) {
                tile_join(t, t - TILE);
            }
            if (p.eight != 0u) {
                if (lid.x > 0u && labelled(up - 1u)) {
                    tile_join(t, t - TILE - 1u);
                }
                if (lid.x + 1u < TILE && id.x + 1u < p.width && labelled(up + 1u)) {
                    tile_join(t, t - TILE + 1u);
                }
            }
        }
    }
    workgroupBarrier();
    if (!inside) {
        return;
    }
    var v = 0u;
    if (on) {
        let r = tile_find(t);
        v = (wid.y * TILE + r / TILE) * p.width + wid.x * TILE + r % TILE + 1u;
    }
    atomicStore(&lab[i], v);
}

// Joins of neighbours in different tiles (after `local`): the tile's first row with the row
// above, its first column with the column on the left, and (8-connected) its last column with
// the pixel up and to the right.
@compute @workgroup_size(16, 16)
fn seams(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let eight = p.eight != 0u;
    let first_row = lid.y == 0u;
    let first_col = lid.x == 0u;
    let last_col = lid.x + 1u == TILE;
    if (!(first_row || first_col || (eight && last_col))) {
        return;
    }
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    if (!labelled(i)) {
        return;
    }
    let me = i + 1u;
    if (first_col && id.x > 0u && labelled(i - 1u)) {
        join(me, i);
    }
    if (id.y > 0u) {
        let up = i - p.width;
        if (first_row && labelled(up)) {
            join(me, up + 1u);
        }
        if (eight) {
            if ((first_row || first_col) && id.x > 0u && labelled(up - 1u)) {
                join(me, up);
            }
            if ((first_row || last_col) && id.x + 1u < p.width && labelled(up + 1u)) {
                join(me, up + 2u);
            }
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

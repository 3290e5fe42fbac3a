// Exact Euclidean distance transform (ipscope_core::ops::distance::distance_transform_edt):
// P. Felzenszwalb & D. Huttenlocher, "Distance Transforms of Sampled Functions", Theory of
// Computing 8 (2012). `columns_window`: one invocation per pixel, the vertical distance to
// the nearest background pixel found within COLUMN_WINDOW pixels up and down (or the image's
// edge, beyond which nothing is background); a pixel it cannot settle flags its column.
// `columns`: one invocation per column, the same distances by a sweep down and up the column
// (every column, or with `flagged` set only the flagged ones). `rows`: one invocation per
// row, the lower envelope of the
// parabolas (x - q)² + g(q)². The intersections are kept as integers (the first column
// where the newer parabola is strictly lower, a floor division as in A. Meijster et al.,
// "A general algorithm for computing distance transforms in linear time", 2000), which
// selects the same envelope at every integer column, so the squared distances are exact
// integers; the host takes the square root. Needs width² + height² < 2³¹.
//
// `rows` runs one workgroup per row. Where every vertical distance of the row is at most
// WINDOW, each pixel x takes the minimum of (x - q)² + g(q)² over |x - q| <= g(x) directly,
// one invocation per pixel: no q farther away can beat g(x)² (q = x), so the minimum is the
// envelope's, exactly. Rows with a larger (or infinite) vertical distance run the envelope,
// one invocation for the row.

struct Params {
    width: u32,
    height: u32,
    // 1: `columns` sweeps only the columns `columns_window` flagged; 0: every column.
    flagged: u32,
    _pad1: u32,
}

const INF: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mask: array<u32>;
// Vertical distances, then (rows) squared distances.
@group(0) @binding(2) var<storage, read_write> g: array<u32>;
@group(0) @binding(3) var<storage, read_write> d2: array<u32>;
// Per-row scratch: envelope apexes and their first columns.
@group(0) @binding(4) var<storage, read_write> env_v: array<u32>;
@group(0) @binding(5) var<storage, read_write> env_z: array<i32>;
// Per column: 1 where `columns_window` left a pixel unsettled (zeroed before the pass).
@group(0) @binding(6) var<storage, read_write> need: array<atomic<u32>>;

// How far `columns_window` looks up and down. A pixel whose nearer background lies within it
// (or whose both sides end at the image's edge or background within it) is settled exactly:
// a side not seen to its end lies farther than the window, so farther than the side found.
const COLUMN_WINDOW: u32 = 64u;

@compute @workgroup_size(16, 16)
fn columns_window(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = id.y;
    if (x >= p.width || y >= p.height) {
        return;
    }
    let w = p.width;
    let i = y * w + x;
    if (mask[i] == 0u) {
        g[i] = 0u;
        return;
    }
    var up = INF;
    var up_seen = false;
    for (var k = 1u; k <= COLUMN_WINDOW; k = k + 1u) {
        if (k > y) {
            up_seen = true;
            break;
        }
        if (mask[i - k * w] == 0u) {
            up = k;
            up_seen = true;
            break;
        }
    }
    var down = INF;
    var down_seen = false;
    for (var k = 1u; k <= COLUMN_WINDOW; k = k + 1u) {
        if (y + k >= p.height) {
            down_seen = true;
            break;
        }
        if (mask[i + k * w] == 0u) {
            down = k;
            down_seen = true;
            break;
        }
    }
    let best = min(up, down);
    if (best != INF || (up_seen && down_seen)) {
        g[i] = best;
    } else {
        atomicStore(&need[x], 1u);
    }
}

@compute @workgroup_size(64)
fn columns(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    if (x >= p.width) {
        return;
    }
    if (p.flagged != 0u && atomicLoad(&need[x]) == 0u) {
        return;
    }
    let w = p.width;
    var prev = INF;
    for (var y = 0u; y < p.height; y = y + 1u) {
        let i = y * w + x;
        var v = INF;
        if (mask[i] == 0u) {
            v = 0u;
        } else if (prev != INF) {
            v = prev + 1u;
        }
        g[i] = v;
        prev = v;
    }
    var below = INF;
    for (var y = i32(p.height) - 1; y >= 0; y = y - 1) {
        let i = u32(y) * w + x;
        var v = g[i];
        if (below != INF && below + 1u < v) {
            v = below + 1u;
        }
        g[i] = v;
        below = v;
    }
}

fn floor_div(a: i32, b: i32) -> i32 {
    // b > 0
    var q = a / b;
    if (a % b != 0 && a < 0) {
        q = q - 1;
    }
    return q;
}

// f(q) + q², the parabola's apex term.
fn apex(base: u32, q: u32) -> i32 {
    let gq = i32(g[base + q]);
    return gq * gq + i32(q * q);
}

const WINDOW: u32 = 64u;
var<workgroup> row_max: atomic<u32>;

@compute @workgroup_size(256)
fn rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let y = wid.x + wid.y * groups.x;
    if (lid == 0u) {
        atomicStore(&row_max, 0u);
    }
    workgroupBarrier();
    let w = p.width;
    let base = y * w;
    if (y < p.height) {
        for (var x = lid; x < w; x = x + 256u) {
            atomicMax(&row_max, g[base + x]);
        }
    }
    workgroupBarrier();
    if (y >= p.height) {
        return;
    }
    if (atomicLoad(&row_max) <= WINDOW) {
        for (var x = lid; x < w; x = x + 256u) {
            let gx = g[base + x];
            var best = gx * gx;
            let lo = x - min(x, gx);
            let hi = min(x + gx, w - 1u);
            for (var q = lo; q <= hi; q = q + 1u) {
                let gq = g[base + q];
                let dx = i32(x) - i32(q);
                best = min(best, u32(dx * dx) + gq * gq);
            }
            d2[base + x] = best;
        }
    } else if (lid == 0u) {
        envelope(y);
    }
}

// The row's squared distances from the lower envelope of its parabolas.
fn envelope(y: u32) {
    let w = p.width;
    let base = y * w;
    var k = 0u;
    for (var q = 0u; q < w; q = q + 1u) {
        if (g[base + q] == INF) {
            continue;
        }
        let aq = apex(base, q);
        loop {
            if (k == 0u) {
                env_v[base] = q;
                env_z[base] = -2147483647;
                k = 1u;
                break;
            }
            let pp = env_v[base + k - 1u];
            let start = floor_div(aq - apex(base, pp), 2 * i32(q - pp)) + 1;
            if (start <= env_z[base + k - 1u]) {
                k = k - 1u;
            } else {
                env_v[base + k] = q;
                env_z[base + k] = start;
                k = k + 1u;
                break;
            }
        }
    }
    if (k == 0u) {
        for (var x = 0u; x < w; x = x + 1u) {
            d2[base + x] = INF;
        }
        return;
    }
    var j = 0u;
    for (var x = 0u; x < w; x = x + 1u) {
        while (j + 1u < k && env_z[base + j + 1u] <= i32(x)) {
            j = j + 1u;
        }
        let pp = env_v[base + j];
        let gp = g[base + pp];
        let dx = i32(x) - i32(pp);
        d2[base + x] = u32(dx * dx) + gp * gp;
    }
}

// Exact Euclidean distance transform (ipscope_core::ops::distance::distance_transform_edt):
// P. Felzenszwalb & D. Huttenlocher, "Distance Transforms of Sampled Functions", Theory of
// Computing 8 (2012). `columns`: one invocation per column, the vertical distance to the
// nearest background pixel. `rows`: one invocation per row, the lower envelope of the
// parabolas (x - q)² + g(q)². The intersections are kept as integers (the first column
// where the newer parabola is strictly lower, a floor division as in A. Meijster et al.,
// "A general algorithm for computing distance transforms in linear time", 2000), which
// selects the same envelope at every integer column, so the squared distances are exact
// integers; the host takes the square root. Needs width² + height² < 2³¹.
//
// `rows` walks one row per invocation; with `transposed` set it reads its input and writes
// its output (and scratch) with the row index fastest, so neighbouring invocations touch
// neighbouring words. A whole image runs `columns`, `transpose` (g into d2), `rows`
// transposed (d2 into g) and `transpose` back (g into d2); bands of a tiled image run
// `rows` in place.

struct Params {
    width: u32,
    height: u32,
    transposed: u32,
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

@compute @workgroup_size(64)
fn columns(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    if (x >= p.width) {
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

// Where row `y`, column `x` of a row-major `width × height` image lies in the layout `rows`
// works in.
fn at(y: u32, x: u32) -> u32 {
    if (p.transposed != 0u) {
        return x * p.height + y;
    }
    return y * p.width + x;
}

// f(q) + q², the parabola's apex term.
fn apex(y: u32, q: u32) -> i32 {
    let gq = i32(g[at(y, q)]);
    return gq * gq + i32(q * q);
}

@compute @workgroup_size(64)
fn rows(@builtin(global_invocation_id) id: vec3<u32>) {
    let y = id.x;
    if (y >= p.height) {
        return;
    }
    let w = p.width;
    var k = 0u;
    for (var q = 0u; q < w; q = q + 1u) {
        if (g[at(y, q)] == INF) {
            continue;
        }
        let aq = apex(y, q);
        loop {
            if (k == 0u) {
                env_v[at(y, 0u)] = q;
                env_z[at(y, 0u)] = -2147483647;
                k = 1u;
                break;
            }
            let pp = env_v[at(y, k - 1u)];
            let start = floor_div(aq - apex(y, pp), 2 * i32(q - pp)) + 1;
            if (start <= env_z[at(y, k - 1u)]) {
                k = k - 1u;
            } else {
                env_v[at(y, k)] = q;
                env_z[at(y, k)] = start;
                k = k + 1u;
                break;
            }
        }
    }
    if (k == 0u) {
        for (var x = 0u; x < w; x = x + 1u) {
            d2[at(y, x)] = INF;
        }
        return;
    }
    var j = 0u;
    for (var x = 0u; x < w; x = x + 1u) {
        while (j + 1u < k && env_z[at(y, j + 1u)] <= i32(x)) {
            j = j + 1u;
        }
        let pp = env_v[at(y, j)];
        let gp = g[at(y, pp)];
        let dx = i32(x) - i32(pp);
        d2[at(y, x)] = u32(dx * dx) + gp * gp;
    }
}

var<workgroup> tile: array<u32, 272>;

// d2 = the transpose of the row-major `width × height` image in g, through a 16 × 17 tile
// so both the reads and the writes are contiguous.
@compute @workgroup_size(16, 16)
fn transpose(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) l: vec3<u32>,
) {
    let x = wg.x * 16u + l.x;
    let y = wg.y * 16u + l.y;
    if (x < p.width && y < p.height) {
        tile[l.y * 17u + l.x] = g[y * p.width + x];
    }
    workgroupBarrier();
    let ty = wg.y * 16u + l.x;
    let tx = wg.x * 16u + l.y;
    if (ty < p.height && tx < p.width) {
        d2[tx * p.height + ty] = tile[l.x * 17u + l.y];
    }
}

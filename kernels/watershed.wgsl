// Marker-controlled watershed (ipscope_core::ops::watershed::watershed, 4-connected) by
// parallel relaxation of flooding keys. The CPU reference pops pixels from a priority queue
// keyed by (cost, age), where a pixel's cost is the largest elevation on the cheapest path
// from a marker (max(own elevation, cost of the pixel that reached it)) and the age orders
// equal costs first come, first served. Here every pixel holds the key
// (cost, steps since the path last climbed) of its best path, and each `relax` step sets it
// to the best of its four neighbours' keys extended by one step, with that neighbour's
// label. Equal keys are decided as the reference's queue would: by the key of the pixel
// that lifted the path onto its current level (the reference floods a plateau breadth
// first behind its entries, in the order they were pushed), then by the raster index of the
// marker the path started from (markers enter the queue in raster order). The (cost, steps)
// part only falls and paths are acyclic, so repeating the step until nothing changes
// reaches the best keys, independent of the order of the steps; the labels then differ
// from the reference only where its queue breaks a tie by age in a way these keys do not
// capture.
//
// Jacobi steps (read `state_in`, write `state_out`, the host swaps them), so there is no
// race and the result does not depend on scheduling.
//
// `relax_local` is the same step repeated inside each 16 × 16 tile in workgroup memory, with
// the tile's one-pixel border held at its `state_in` keys, until the tile stops changing
// (at most LOCAL_STEPS times), so one dispatch carries a front across a tile instead of one
// pixel. Each repetition is a Jacobi step of the tile (two copies in workgroup memory), and
// the fixed point does not depend on the order of the updates (see src/watershed.rs), so it
// reaches the labels of `relax` in fewer dispatches and rounds.
//
// An image whose state does not fit one binding runs as bands of rows, each with a halo row
// above and below (a copy of the neighbouring band's edge row, which `relax` leaves alone);
// the host relaxes every band, copies the edge rows into the neighbours' halos, and repeats
// until a round changes nothing. The fixed point is unique (see src/watershed.rs), so the
// bands give the labels of one pass over the whole image.

struct Params {
    // Width and height of this band (of the image when it is one band), halos included.
    width: u32,
    height: u32,
    // Rows [first, last) are relaxed; the others are halos, kept as they are.
    first: u32,
    last: u32,
    // Image row of the band's row 0, so a marker's raster index is the image's.
    row0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Order-preserving u32 key of each pixel's elevation; 0xffffffff outside the mask.
@group(0) @binding(1) var<storage, read> elev: array<u32>;
// Per pixel (6 words): cost key, steps on the plateau, the cost key and steps of the pixel
// that lifted its path onto this level, raster index of its marker, label (0: not reached).
@group(0) @binding(2) var<storage, read> state_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> state_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> changed: atomic<u32>;

const S: u32 = 6u;

struct Best {
    cost: u32,
    steps: u32,
    pcost: u32,
    psteps: u32,
    origin: u32,
    label: u32,
}

fn less(a: Best, b: Best) -> bool {
    if (a.cost != b.cost) {
        return a.cost < b.cost;
    }
    if (a.steps != b.steps) {
        return a.steps < b.steps;
    }
    if (a.pcost != b.pcost) {
        return a.pcost < b.pcost;
    }
    if (a.psteps != b.psteps) {
        return a.psteps < b.psteps;
    }
    return a.origin < b.origin;
}

fn differs(a: Best, b: Best) -> bool {
    return less(a, b) || less(b, a) || a.label != b.label;
}

fn load(i: u32) -> Best {
    let b = i * S;
    return Best(
        state_in[b],
        state_in[b + 1u],
        state_in[b + 2u],
        state_in[b + 3u],
        state_in[b + 4u],
        state_in[b + 5u],
    );
}

fn offer(best: Best, e: u32, q: u32) -> Best {
    return consider(best, e, load(q));
}

// The better of `best` and the path through neighbour `n` onto a pixel of elevation key `e`.
fn consider(best: Best, e: u32, n: Best) -> Best {
    if (n.label == 0u) {
        return best;
    }
    // Across a plateau (not higher than the path so far) the pixel queues behind the same
    // entry as its neighbour, one step later; climbing, it enters a new level behind the
    // neighbour that lifted it.
    var cand = Best(n.cost, n.steps + 1u, n.pcost, n.psteps, n.origin, n.label);
    if (e > n.cost) {
        cand = Best(e, 0u, n.cost, n.steps, n.origin, n.label);
    }
    if (less(cand, best)) {
        return cand;
    }
    return best;
}

// The starting state in `state_out`, from the marker labels the host put in the first
// words of `state_in`: a marker inside the mask gets its elevation key, zero steps, a zero
// lifting key (the least its cost allows, so no neighbour displaces it), its own raster
// index and its label; every other pixel is unreached. Markers outside the mask are dropped.
@compute @workgroup_size(16, 16)
fn init(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let e = elev[i];
    let m = state_in[i];
    var v = Best(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0u);
    if (e != 0xffffffffu && m != 0u) {
        v = Best(e, 0u, 0u, 0u, p.row0 * p.width + i, m);
    }
    store(i, v);
}

// The labels of the final state, one word per pixel, into the first words of `state_out`.
@compute @workgroup_size(16, 16)
fn extract(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    state_out[i] = state_in[i * S + 5u];
}

@compute @workgroup_size(16, 16)
fn relax(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= p.width || id.y >= p.height) {
        return;
    }
    let i = id.y * p.width + id.x;
    let own = load(i);
    let e = elev[i];
    // Outside the mask nothing changes; a marker keeps its key and label. Markers are the
    // only pixels with zero steps and a zero lifting cost: no elevation key is 0, so a climb
    // never gives one, and a plateau inherits it only with steps >= 1. Halo rows are the
    // neighbouring band's, copied in by the host.
    let halo = id.y < p.first || id.y >= p.last;
    if (halo || e == 0xffffffffu || (own.label != 0u && own.steps == 0u && own.pcost == 0u)) {
        store(i, own);
        return;
    }
    // Recomputed from the neighbours at every step (not kept from an earlier one), so the
    // fixed point is consistent with the neighbours' final keys.
    var best = Best(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0u);
    if (id.y > 0u) {
        best = offer(best, e, i - p.width);
    }
    if (id.x > 0u) {
        best = offer(best, e, i - 1u);
    }
    if (id.x + 1u < p.width) {
        best = offer(best, e, i + 1u);
    }
    if (id.y + 1u < p.height) {
        best = offer(best, e, i + p.width);
    }
    store(i, best);
    if (differs(best, own)) {
        atomicStore(&changed, 1u);
    }
}

fn store(i: u32, v: Best) {
    let b = i * S;
    state_out[b] = v.cost;
    state_out[b + 1u] = v.steps;
    state_out[b + 2u] = v.pcost;
    state_out[b + 3u] = v.psteps;
    state_out[b + 4u] = v.origin;
    state_out[b + 5u] = v.label;
}

// Tile of `relax_local`: 16 × 16 pixels and their one-pixel border.
const TILE: u32 = 16u;
const SIDE: u32 = 18u;
const CELLS: u32 = 324u;
// Repetitions of the step inside a tile per dispatch, at most.
const LOCAL_STEPS: u32 = 64u;

// Two copies of the tile's state (S words per cell): the step reads one and writes the other.
var<workgroup> tiles: array<u32, 3888>;
// Whether a pixel of the tile changed in this repetition, and that flag as read by all.
var<workgroup> moved: atomic<u32>;
var<workgroup> again: u32;

fn tile_load(copy: u32, t: u32) -> Best {
    let b = (copy * CELLS + t) * S;
    return Best(tiles[b], tiles[b + 1u], tiles[b + 2u], tiles[b + 3u], tiles[b + 4u], tiles[b + 5u]);
}

fn tile_store(copy: u32, t: u32, v: Best) {
    let b = (copy * CELLS + t) * S;
    tiles[b] = v.cost;
    tiles[b + 1u] = v.steps;
    tiles[b + 2u] = v.pcost;
    tiles[b + 3u] = v.psteps;
    tiles[b + 4u] = v.origin;
    tiles[b + 5u] = v.label;
}

fn tile_offer(best: Best, e: u32, copy: u32, t: u32) -> Best {
    return consider(best, e, tile_load(copy, t));
}

@compute @workgroup_size(16, 16)
fn relax_local(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let unreached = Best(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0u);
    // The tile and its border into both copies; cells beyond the image are unreached (label
    // 0), which `tile_offer` ignores as `relax` ignores a missing neighbour.
    let me = lid.y * TILE + lid.x;
    for (var k = me; k < CELLS; k += TILE * TILE) {
        let x = i32(wid.x * TILE + k % SIDE) - 1;
        let y = i32(wid.y * TILE + k / SIDE) - 1;
        var v = unreached;
        if (x >= 0 && y >= 0 && u32(x) < p.width && u32(y) < p.height) {
            v = load(u32(y) * p.width + u32(x));
        }
        tile_store(0u, k, v);
        tile_store(1u, k, v);
    }
    workgroupBarrier();
    let inside = id.x < p.width && id.y < p.height;
    let t = (lid.y + 1u) * SIDE + lid.x + 1u;
    let i = id.y * p.width + id.x;
    var e = 0xffffffffu;
    var own = unreached;
    // Pixels whose key `relax` never changes (see there) and invocations beyond the image
    // keep theirs; they still take part in every barrier.
    var fixed = true;
    if (inside) {
        e = elev[i];
        own = tile_load(0u, t);
        let halo = id.y < p.first || id.y >= p.last;
        fixed = halo || e == 0xffffffffu || (own.label != 0u && own.steps == 0u && own.pcost == 0u);
    }
    var value = own;
    var copy = 0u;
    for (var step = 0u; step < LOCAL_STEPS; step++) {
        if (!fixed) {
            var best = unreached;
            if (id.y > 0u) {
                best = tile_offer(best, e, copy, t - SIDE);
            }
            if (id.x > 0u) {
                best = tile_offer(best, e, copy, t - 1u);
            }
            if (id.x + 1u < p.width) {
                best = tile_offer(best, e, copy, t + 1u);
            }
            if (id.y + 1u < p.height) {
                best = tile_offer(best, e, copy, t + SIDE);
            }
            if (differs(best, value)) {
                atomicStore(&moved, 1u);
            }
            value = best;
            tile_store(1u - copy, t, value);
        }
        workgroupBarrier();
        if (me == 0u) {
            again = atomicLoad(&moved);
            atomicStore(&moved, 0u);
        }
        copy = 1u - copy;
        if (workgroupUniformLoad(&again) == 0u) {
            break;
        }
    }
    if (!inside) {
        return;
    }
    store(i, value);
    if (differs(value, own)) {
        atomicStore(&changed, 1u);
    }
}

//! Points of a map binned once into a square grid, so that drawing, picking and the nearest
//! map neighbours never pass over every point.
//!
//! [`PointGrid`] sorts the point ids by cell (compressed rows): the points of any rectangle
//! are those of the cells it covers. [`Pyramid`] keeps, for a colouring of the points, the
//! majority colour of every cell at every power-of-two resolution (a mergeable Boyer–Moore
//! vote, children to parent), so a frame reads one cell per screen dot whatever the number
//! of points: the resolution is chosen whose cells are no larger than a dot.

/// The empty cell of a [`Pyramid`] level.
pub const EMPTY: u32 = u32::MAX;

/// Point ids sorted by the grid cell they fall in.
#[derive(Clone, Debug)]
pub struct PointGrid {
    pub lo: [f64; 2],
    pub hi: [f64; 2],
    /// Cells per side (a power of two).
    pub side: usize,
    /// `cell_start[c]..cell_start[c + 1]` are cell `c`'s entries in `order` (c = y·side + x).
    cell_start: Vec<u32>,
    order: Vec<u32>,
}

impl PointGrid {
    /// Bins `points` into a grid of about two points per cell along each axis, at most
    /// `max_side` cells per side.
    pub fn new(points: &[[f32; 2]], max_side: usize) -> Self {
        let (lo, hi) = super::layout::bounds(points);
        let wide = |a: usize| ((hi[a] - lo[a]) as f64).max(1e-6);
        let lo = [lo[0] as f64, lo[1] as f64];
        let hi = [
            lo[0] + wide(0) * (1.0 + 1e-9),
            lo[1] + wide(1) * (1.0 + 1e-9),
        ];
        let want = ((points.len() as f64).sqrt() * 2.0).ceil() as usize;
        let side = want.next_power_of_two().clamp(16, max_side.max(16));
        let mut grid = Self {
            lo,
            hi,
            side,
            cell_start: vec![0; side * side + 1],
            order: Vec::new(),
        };
        let cells: Vec<u32> = points.iter().map(|p| grid.cell_of(*p) as u32).collect();
        for &c in &cells {
            grid.cell_start[c as usize + 1] += 1;
        }
        for c in 0..side * side {
            grid.cell_start[c + 1] += grid.cell_start[c];
        }
        let mut fill = grid.cell_start.clone();
        grid.order = vec![0; points.len()];
        for (i, &c) in cells.iter().enumerate() {
            grid.order[fill[c as usize] as usize] = i as u32;
            fill[c as usize] += 1;
        }
        grid
    }

    pub fn cell_size(&self) -> [f64; 2] {
        [
            (self.hi[0] - self.lo[0]) / self.side as f64,
            (self.hi[1] - self.lo[1]) / self.side as f64,
        ]
    }

    /// The (x, y) cell of a position, clamped to the grid.
    pub fn cell_xy(&self, p: [f64; 2]) -> (usize, usize) {
        let s = self.cell_size();
        let f = |a: usize| {
            let v = ((p[a] - self.lo[a]) / s[a]).floor();
            (v.max(0.0) as usize).min(self.side - 1)
        };
        (f(0), f(1))
    }

    fn cell_of(&self, p: [f32; 2]) -> usize {
        let (x, y) = self.cell_xy([p[0] as f64, p[1] as f64]);
        y * self.side + x
    }

    /// The entries in cell (x, y).
    pub fn cell(&self, x: usize, y: usize) -> &[u32] {
        let c = y * self.side + x;
        &self.order[self.cell_start[c] as usize..self.cell_start[c + 1] as usize]
    }

    /// The cell ranges (x0..=x1, y0..=y1) covering a rectangle, or None when it misses the grid.
    pub fn cells_in(
        &self,
        x: (f64, f64),
        y: (f64, f64),
    ) -> Option<((usize, usize), (usize, usize))> {
        if x.1 < self.lo[0] || x.0 > self.hi[0] || y.1 < self.lo[1] || y.0 > self.hi[1] {
            return None;
        }
        let (x0, y0) = self.cell_xy([x.0, y.0]);
        let (x1, y1) = self.cell_xy([x.1, y.1]);
        Some(((x0, x1), (y0, y1)))
    }

    /// The `k` points nearest `p` (Euclidean in the plane), nearest first, ties by id;
    /// `skip` is left out (a point's own id).
    pub fn nearest(
        &self,
        points: &[[f32; 2]],
        p: [f32; 2],
        k: usize,
        skip: Option<usize>,
    ) -> Vec<(usize, f32)> {
        let total = points.len() - usize::from(skip.is_some_and(|s| s < points.len()));
        let k = k.min(total);
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        if k == 0 {
            return Vec::new();
        }
        let (cx, cy) = self.cell_xy([p[0] as f64, p[1] as f64]);
        let s = self.cell_size();
        let min_side = s[0].min(s[1]);
        let mut ring = 0usize;
        loop {
            // The cells at Chebyshev distance `ring` from (cx, cy).
            let x0 = cx as i64 - ring as i64;
            let x1 = cx as i64 + ring as i64;
            let y0 = cy as i64 - ring as i64;
            let y1 = cy as i64 + ring as i64;
            let side = self.side as i64;
            let visit = |x: i64, y: i64, best: &mut Vec<(f32, usize)>| {
                if x < 0 || y < 0 || x >= side || y >= side {
                    return;
                }
                for &i in self.cell(x as usize, y as usize) {
                    let i = i as usize;
                    if Some(i) == skip {
                        continue;
                    }
                    let q = points[i];
                    let d = (q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2);
                    if best.len() < k || (d, i) < best[best.len() - 1] {
                        let at = best.partition_point(|&b| b < (d, i));
                        best.insert(at, (d, i));
                        best.truncate(k);
                    }
                }
            };
            if ring == 0 {
                visit(x0, y0, &mut best);
            } else {
                for x in x0..=x1 {
                    visit(x, y0, &mut best);
                    visit(x, y1, &mut best);
                }
                for y in y0 + 1..y1 {
                    visit(x0, y, &mut best);
                    visit(x1, y, &mut best);
                }
            }
            // Every point outside the rings seen so far is at least `ring` cells away.
            let covered = ring as f64 * min_side;
            let done = best.len() == k && (best[k - 1].0 as f64).sqrt() <= covered;
            if done || ring > self.side {
                break;
            }
            ring += 1;
        }
        best.into_iter().map(|(d, i)| (i, d.sqrt())).collect()
    }
}

/// The majority category of every cell of a [`PointGrid`] at every resolution.
#[derive(Clone, Debug)]
pub struct Pyramid {
    /// `levels[l]` has 2^l × 2^l cells (row-major, y then x) of (category, points); the last
    /// level is the grid's. A cell's category is its points' majority (a Boyer–Moore vote) at
    /// the finest level, and the category holding most points among its four children above.
    pub levels: Vec<Vec<(u32, u32)>>,
}

impl Pyramid {
    /// Votes `category[i]` of every point (EMPTY: not drawn) into the grid's cells, then
    /// merges each 2 × 2 block of cells into its parent.
    pub fn build(grid: &PointGrid, category: &[u32]) -> Self {
        let side = grid.side;
        let mut finest: Vec<(u32, u32)> = vec![(EMPTY, 0); side * side];
        for y in 0..side {
            for x in 0..side {
                let mut cell = (EMPTY, 0);
                let mut drawn = 0;
                for &i in grid.cell(x, y) {
                    let c = category[i as usize];
                    if c != EMPTY {
                        vote(&mut cell, c, 1);
                        drawn += 1;
                    }
                }
                finest[y * side + x] = (cell.0, drawn);
            }
        }
        let mut levels = vec![finest];
        let mut s = side;
        while s > 1 {
            let child = levels.last().expect("one level");
            let h = s / 2;
            let mut parent = vec![(EMPTY, 0u32); h * h];
            for y in 0..h {
                for x in 0..h {
                    let kids = [(0, 0), (1, 0), (0, 1), (1, 1)]
                        .map(|(dx, dy)| child[(2 * y + dy) * s + 2 * x + dx]);
                    let total: u32 = kids.iter().map(|k| k.1).sum();
                    let best = kids
                        .iter()
                        .filter(|k| k.0 != EMPTY && k.1 > 0)
                        .map(|k| {
                            let mass: u32 = kids.iter().filter(|o| o.0 == k.0).map(|o| o.1).sum();
                            (mass, std::cmp::Reverse(k.0))
                        })
                        .max();
                    if let Some((_, std::cmp::Reverse(c))) = best {
                        parent[y * h + x] = (c, total);
                    }
                }
            }
            levels.push(parent);
            s = h;
        }
        levels.reverse();
        Self { levels }
    }

    /// The finest level's index (log₂ of the grid's side).
    pub fn finest(&self) -> usize {
        self.levels.len() - 1
    }
}

/// Adds `n` votes for `c` to a Boyer–Moore (candidate, margin) pair.
pub fn vote(cell: &mut (u32, u32), c: u32, n: u32) {
    if c == EMPTY || n == 0 {
        return;
    }
    if cell.1 == 0 {
        *cell = (c, n);
    } else if cell.0 == c {
        cell.1 += n;
    } else if cell.1 >= n {
        cell.1 -= n;
        if cell.1 == 0 {
            // A tie keeps the cell drawn: the newer candidate, with no margin left over.
            *cell = (c, 0);
        }
    } else {
        *cell = (c, n - cell.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_matches_brute_force() {
        let mut s = 7u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let points: Vec<[f32; 2]> = (0..3000).map(|_| [r() * 10.0, r() * r() * 3.0]).collect();
        let grid = PointGrid::new(&points, 1024);
        for q in [0usize, 17, 2999] {
            let got = grid.nearest(&points, points[q], 10, Some(q));
            let mut all: Vec<(f32, usize)> = (0..points.len())
                .filter(|&i| i != q)
                .map(|i| {
                    let d = (points[i][0] - points[q][0]).powi(2)
                        + (points[i][1] - points[q][1]).powi(2);
                    (d, i)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<usize> = all[..10].iter().map(|x| x.1).collect();
            assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn pyramid_keeps_the_majority() {
        let points = vec![[0.0, 0.0], [0.1, 0.1], [0.05, 0.0], [10.0, 10.0]];
        let grid = PointGrid::new(&points, 16);
        let p = Pyramid::build(&grid, &[1, 1, 2, 3]);
        let finest = &p.levels[p.finest()];
        assert_eq!(finest.iter().filter(|c| c.0 != EMPTY).count(), 2);
        assert_eq!(finest[grid.side * grid.side - 1], (3, 1));
        assert_eq!(
            p.levels[0],
            vec![(1, 4)],
            "three of four points are in 1's cell"
        );
    }
}

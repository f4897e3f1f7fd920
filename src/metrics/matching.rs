//! Maximum bipartite matching exactly as sed_eval's `util.bipartite_match`
//! (Hopcroft–Karp after mir_eval / D. Eppstein), including its iteration order:
//! sed_eval's substitution count depends on which maximum matching is found.

/// Where a left vertex came from in the current layering.
#[derive(Clone, Copy, PartialEq)]
enum Pred {
    /// Not in the layering (matched, or already used by an augmenting path).
    Absent,
    /// A free left vertex of the first layer.
    Root,
    /// Reached through this right vertex.
    Right(usize),
}

/// Finds a maximum matching of a bipartite graph.
///
/// `graph` lists the left vertices in order, each with its right neighbours in order
/// (`graph[u].0` is the caller's id of left vertex `u`, `graph[u].1` its neighbours,
/// right ids below `n_right`). Returns the matched `(right, left id)` pairs sorted by
/// right id, the same matching sed_eval finds for a dict built in this order.
pub fn bipartite_match(graph: &[(usize, Vec<usize>)], n_right: usize) -> Vec<(usize, usize)> {
    let n_left = graph.len();
    // matching: right -> left position, plus insertion order (irrelevant to the result).
    let mut matching: Vec<Option<usize>> = vec![None; n_right];
    for (u, (_, nbrs)) in graph.iter().enumerate() {
        for &v in nbrs {
            if matching[v].is_none() {
                matching[v] = Some(u);
                break;
            }
        }
    }
    loop {
        let mut preds: Vec<Option<Vec<usize>>> = vec![None; n_right];
        let mut unmatched: Vec<usize> = Vec::new();
        let mut pred = vec![Pred::Root; n_left];
        for u in matching.iter().flatten() {
            pred[*u] = Pred::Absent;
        }
        let mut layer: Vec<usize> = (0..n_left).filter(|&u| pred[u] == Pred::Root).collect();
        while !layer.is_empty() && unmatched.is_empty() {
            // new_layer: right vertex -> left vertices, in first-discovery order
            let mut order: Vec<usize> = Vec::new();
            let mut new_layer: Vec<Option<Vec<usize>>> = vec![None; n_right];
            for &u in &layer {
                for &v in &graph[u].1 {
                    if preds[v].is_none() {
                        match &mut new_layer[v] {
                            Some(list) => list.push(u),
                            None => {
                                new_layer[v] = Some(vec![u]);
                                order.push(v);
                            }
                        }
                    }
                }
            }
            layer.clear();
            for v in order {
                preds[v] = new_layer[v].take();
                if let Some(u) = matching[v] {
                    layer.push(u);
                    pred[u] = Pred::Right(v);
                } else {
                    unmatched.push(v);
                }
            }
        }
        if unmatched.is_empty() {
            let mut out: Vec<(usize, usize)> = matching
                .iter()
                .enumerate()
                .filter_map(|(v, u)| u.map(|u| (v, graph[u].0)))
                .collect();
            out.sort_unstable();
            return out;
        }
        for v in unmatched {
            recurse(v, &mut preds, &mut pred, &mut matching);
        }
    }
}

fn recurse(
    v: usize,
    preds: &mut [Option<Vec<usize>>],
    pred: &mut [Pred],
    matching: &mut [Option<usize>],
) -> bool {
    if let Some(list) = preds[v].take() {
        for u in list {
            let pu = pred[u];
            if pu != Pred::Absent {
                pred[u] = Pred::Absent;
                let ok = match pu {
                    Pred::Root => true,
                    Pred::Right(pv) => recurse(pv, preds, pred, matching),
                    Pred::Absent => false,
                };
                if ok {
                    matching[v] = Some(u);
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_maximum_matching_through_an_augmenting_path() {
        // left 0 -> {0, 1}, left 1 -> {0}: greedy takes (0,0), augmenting gives 2 pairs.
        let g = vec![(0, vec![0, 1]), (1, vec![0])];
        let m = bipartite_match(&g, 2);
        assert_eq!(m, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn empty_graph_has_empty_matching() {
        assert!(bipartite_match(&[], 0).is_empty());
    }
}

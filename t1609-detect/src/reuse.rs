//! Per-thread reuse of the event copy that one event's alerts share.
//!
//! `Engine::evaluate` borrows the event, but its alerts own an `Arc<ProcessEvent>`: a
//! fresh copy per matching event costs two dozen allocations, freed again once the alerts
//! are written. The slot keeps the last copy, and when no alert refers to it any more
//! (`Arc::get_mut` succeeds) the next event is copied into its buffers instead.
//!
//! While alerts do share it, the slot's own reference keeps it immutable (`get_mut`
//! fails, `make_mut` copies elsewhere), so the JSON of its event part can be cached
//! beside it and dropped exactly when the copy is refilled. The same goes for the parsed
//! invocations the alerts of one event share (a wrapper's alerts and its command's).

use std::{cell::RefCell, ops::Range, sync::Arc};

use crate::{argv::Invocation, event::ProcessEvent};

/// Invocation JSON kept per slot fill; an event rarely has more invocations.
const MAX_INVS: usize = 8;

struct Slot {
    ev: Option<Arc<ProcessEvent>>,
    /// The event part of `ev`'s alert JSON, once rendered; empty until then.
    json: Vec<u8>,
    /// Where the `container` member lies in `json`.
    container: Range<usize>,
    /// Rendered invocations and their ranges in `inv_json`. Holding a reference keeps
    /// each one immutable and its address unique while cached.
    invs: Vec<(Arc<Invocation>, std::ops::Range<usize>)>,
    inv_json: Vec<u8>,
}

thread_local! {
    static SLOT: RefCell<Slot> = const {
        RefCell::new(Slot {
            ev: None,
            json: Vec::new(),
            container: 0..0,
            invs: Vec::new(),
            inv_json: Vec::new(),
        })
    };
}

/// A shared copy of `ev` for its alerts.
pub(crate) fn share(ev: &ProcessEvent) -> Arc<ProcessEvent> {
    let reused = SLOT.try_with(|slot| {
        // Re-entered (cannot happen today) or torn down: no reuse.
        let mut slot = slot.try_borrow_mut().ok()?;
        let a = match slot.ev.take() {
            Some(mut a) => match Arc::get_mut(&mut a) {
                Some(m) => {
                    m.assign_from(ev);
                    a
                }
                None => Arc::new(ev.clone()),
            },
            None => Arc::new(ev.clone()),
        };
        slot.json.clear();
        slot.invs.clear();
        slot.inv_json.clear();
        slot.ev = Some(Arc::clone(&a));
        Some(a)
    });
    reused
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::new(ev.clone()))
}

/// Hands the event part of `ev`'s alert JSON, and where its `container` member lies in
/// it, to `use_part` when `ev` is this thread's slot copy, rendering it with `render` the
/// first time. Returns false, calling nothing, for any other event.
pub(crate) fn with_cached(
    ev: &Arc<ProcessEvent>,
    render: fn(&mut Vec<u8>, &ProcessEvent) -> Range<usize>,
    use_part: &mut dyn FnMut(&[u8], Range<usize>),
) -> bool {
    SLOT.try_with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return false;
        };
        let slot = &mut *slot;
        match &slot.ev {
            Some(mine) if Arc::ptr_eq(mine, ev) => {
                if slot.json.is_empty() {
                    slot.container = render(&mut slot.json, ev);
                }
                use_part(&slot.json, slot.container.clone());
                true
            }
            _ => false,
        }
    })
    .unwrap_or(false)
}

/// Appends `inv`'s JSON to `out`, rendered with `render` at most once per slot fill.
pub(crate) fn write_invocation_cached(
    inv: &Arc<Invocation>,
    out: &mut Vec<u8>,
    render: fn(&mut Vec<u8>, &Invocation),
) {
    let done = SLOT.try_with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return false;
        };
        let slot = &mut *slot;
        if let Some((_, r)) = slot.invs.iter().find(|(i, _)| Arc::ptr_eq(i, inv)) {
            out.extend_from_slice(&slot.inv_json[r.clone()]);
            return true;
        }
        if slot.invs.len() >= MAX_INVS {
            // A thread that only writes never refills the slot: start over.
            slot.invs.clear();
            slot.inv_json.clear();
        }
        let start = slot.inv_json.len();
        render(&mut slot.inv_json, inv);
        out.extend_from_slice(&slot.inv_json[start..]);
        slot.invs
            .push((Arc::clone(inv), start..slot.inv_json.len()));
        true
    });
    if done != Ok(true) {
        render(out, inv);
    }
}

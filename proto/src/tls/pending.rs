//! The handshakes a listener has in progress, by source address: what keeps one source
//! from taking every other's share before anyone authenticated (CVE-2020-7218's class).
//!
//! A source may have at most `per_source` handshakes in progress: a connection beyond
//! that is closed at once. The listener as a whole has at most `total`: when full, the
//! oldest handshake of the source with the most in progress is cancelled to make room,
//! so a flood only ever pushes out its own (or, at worst, the heaviest source's).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What [`Pending::admit`] decided for a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Handshake it; the slot is given back when the ticket is dropped, and `cancelled`
    /// resolves if the handshake is pushed out to make room for another.
    Admitted(Ticket),
    /// Its source has `per_source` handshakes in progress already: close it.
    SourceFull,
}

/// One admitted handshake's slot.
#[derive(Debug)]
pub struct Ticket {
    table: Pending,
    source: IpAddr,
    id: u64,
    /// Resolves when the handshake was pushed out for a newer one.
    pub cancelled: oneshot::Receiver<()>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.table.release(self.source, self.id);
    }
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    total: usize,
    /// Per source, its handshakes oldest first, each with the sender that cancels it.
    by_source: HashMap<IpAddr, VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// The in-progress handshakes of one listener (cheap to clone).
#[derive(Debug, Clone)]
pub struct Pending {
    table: Arc<Mutex<Table>>,
    per_source: usize,
    total: usize,
}

impl Pending {
    /// A table admitting `per_source` handshakes per source and `total` in all.
    pub fn new(per_source: usize, total: usize) -> Pending {
        Pending {
            table: Arc::default(),
            per_source: per_source.max(1),
            total: total.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `source` (see the module doc).
    pub fn admit(&self, source: IpAddr) -> Admission {
        let mut table = self.lock();
        if table.by_source.get(&source).map_or(0, VecDeque::len) >= self.per_source {
            return Admission::SourceFull;
        }
        if table.total >= self.total {
            // Full: the heaviest source's oldest goes (ties: the lowest address, so the
            // choice is the same on every run).
            let heaviest = table
                .by_source
                .iter()
                .map(|(ip, q)| (q.len(), std::cmp::Reverse(*ip)))
                .max()
                .map(|(_, std::cmp::Reverse(ip))| ip);
            if let Some(ip) = heaviest {
                let table = &mut *table;
                if let Some(q) = table.by_source.get_mut(&ip) {
                    if let Some((_, cancel)) = q.pop_front() {
                        let _ = cancel.send(());
                        table.total -= 1;
                    }
                    if q.is_empty() {
                        table.by_source.remove(&ip);
                    }
                }
            }
        }
        let id = table.next;
        table.next += 1;
        table.total += 1;
        let (tx, rx) = oneshot::channel();
        table
            .by_source
            .entry(source)
            .or_default()
            .push_back((id, tx));
        Admission::Admitted(Ticket {
            table: self.clone(),
            source,
            id,
            cancelled: rx,
        })
    }

    fn release(&self, source: IpAddr, id: u64) {
        let mut table = self.lock();
        let table = &mut *table;
        let Some(q) = table.by_source.get_mut(&source) else {
            return;
        };
        let before = q.len();
        q.retain(|(i, _)| *i != id);
        let gone = before - q.len();
        if q.is_empty() {
            table.by_source.remove(&source);
        }
        table.total -= gone;
    }

    /// Handshakes in progress, in all and per source (for tests and metrics).
    pub fn counts(&self) -> (usize, BTreeMap<IpAddr, usize>) {
        let table = self.lock();
        (
            table.total,
            table
                .by_source
                .iter()
                .map(|(ip, q)| (*ip, q.len()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn admitted(a: Admission) -> Ticket {
        match a {
            Admission::Admitted(t) => t,
            Admission::SourceFull => panic!("refused"),
        }
    }

    #[test]
    fn one_source_cannot_take_the_others_share() {
        let pending = Pending::new(3, 5);
        let mut flood: Vec<Ticket> = (0..3).map(|_| admitted(pending.admit(ip(1)))).collect();
        // Its fourth is refused; another source still gets in.
        assert!(matches!(pending.admit(ip(1)), Admission::SourceFull));
        let good = admitted(pending.admit(ip(2)));
        let other = admitted(pending.admit(ip(3)));
        assert_eq!(pending.counts().0, 5);
        // Full: the heaviest source's oldest is pushed out, not the others'.
        let newcomer = admitted(pending.admit(ip(4)));
        assert_eq!(flood[0].cancelled.try_recv(), Ok(()));
        let (total, per) = pending.counts();
        assert_eq!(total, 5);
        assert_eq!(per[&ip(1)], 2);
        // Slots come back when handshakes end (the pushed-out one counted once).
        drop(flood.remove(0));
        drop((good, other, newcomer));
        assert_eq!(pending.counts(), (2, [(ip(1), 2)].into()));
        drop(flood);
        assert_eq!(pending.counts().0, 0);
    }
}

//! A write transaction's reads: its pending changes laid over the committed state it started
//! from, so that it sees its own writes.

use std::ops::Bound;

use super::kv;
use super::postings;
use super::tables::Table;
use super::{Reader, WriteTxn};
use crate::config::Settings;
use crate::id::RawId;
use crate::model::Index;
use crate::time::Timestamp;
use crate::Result;

impl Reader for WriteTxn<'_> {
    fn pending_rows(&self, table: super::tables::Table) -> Result<Option<super::rows::PendingRows>> {
        use super::tables::{
            DEAL_DOCUMENTS, DEAL_HEADS, DEAL_ROWS, DOCUMENT_ROWS, INTERACTION_ROWS, SHIPMENT_ROWS, TASK_ROWS,
        };
        Ok(Some(match table {
            DEAL_ROWS => self.pending_deal_rows()?,
            DEAL_HEADS => self.pending_deal_heads()?,
            DOCUMENT_ROWS => self.pending_document_rows()?,
            DEAL_DOCUMENTS => self.pending_deal_documents()?,
            INTERACTION_ROWS => self.pending_interaction_rows()?,
            TASK_ROWS => self.pending_task_rows()?,
            SHIPMENT_ROWS => self.pending_shipment_rows()?,
            // Not a table of the scan layout: nothing of it is kept at commit.
            _ => return Ok(None),
        }))
    }

    fn latest_step_at(&self) -> Result<Option<Timestamp>> {
        self.pending_latest_step()
    }

    fn pending_funnel_totals(
        &self,
    ) -> Result<Option<std::collections::BTreeMap<super::FunnelKey, super::FunnelTotals>>> {
        Ok(Some(self.funnel_changes()?))
    }

    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.changes.get(t, key) {
            Some(v) => Ok(v.map(<[u8]>::to_vec)),
            None => Ok(self.kv.base().get(t, key)?),
        }
    }

    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        match self.changes.get(t, key) {
            Some(Some(bytes)) => Ok(Some(decode(bytes)?)),
            Some(None) => Ok(None),
            None => Ok(self.kv.base().get_decoded(t, key, decode)?),
        }
    }

    fn kv_contains(&self, t: Table, key: &[u8]) -> Result<bool> {
        match self.changes.get(t, key) {
            Some(v) => Ok(v.is_some()),
            None => {
                let Some(id) = RawId::from_bytes(key).filter(|_| key.len() == 16) else {
                    return Ok(self.kv.base().contains(t, key)?);
                };
                if self.in_base.borrow().contains(&(t.slot, id)) {
                    return Ok(true);
                }
                let found = self.kv.base().contains(t, key)?;
                if found {
                    let mut known = self.in_base.borrow_mut();
                    if known.len() >= 100_000 {
                        known.clear();
                    }
                    known.insert((t.slot, id));
                }
                Ok(found)
            }
        }
    }

    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()> {
        let pending = &self.changes.tables[t.slot];
        if pending.is_empty() {
            return Ok(self.kv.base().scan(t, from, to, reverse, visit)?);
        }
        // Merge the pending changes in the range with the base scan; pending wins on equal keys.
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (from, to);
        type Pending<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;
        let mut overlay: Pending<'_> = if reverse {
            Box::new(pending.range::<[u8], _>(range).rev())
        } else {
            Box::new(pending.range::<[u8], _>(range))
        };
        let mut next = overlay.next();
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut stopped = false;
        self.kv.base().scan(t, from, to, reverse, &mut |k, v| {
            while let Some((ok, ov)) = next {
                if before(ok, k) {
                    if let Some(ov) = ov {
                        if !visit(ok, ov) {
                            stopped = true;
                            return false;
                        }
                    }
                    next = overlay.next();
                } else {
                    break;
                }
            }
            match next {
                Some((ok, ov)) if ok.as_slice() == k => {
                    next = overlay.next();
                    match ov {
                        Some(ov) => {
                            if !visit(k, ov) {
                                stopped = true;
                                return false;
                            }
                            true
                        }
                        None => true,
                    }
                }
                _ => {
                    if !visit(k, v) {
                        stopped = true;
                        return false;
                    }
                    true
                }
            }
        })?;
        while let (false, Some((ok, ov))) = (stopped, next) {
            if let Some(ov) = ov {
                if !visit(ok, ov) {
                    break;
                }
            }
            next = overlay.next();
        }
        Ok(())
    }

    fn settings(&self) -> &Settings {
        &self.store.settings
    }

    fn now(&self) -> Timestamp {
        self.store.clock.now()
    }

    fn pending(&self, index: Index, prefix: &[u8]) -> Option<&postings::Delta> {
        self.postings.get(&(index, prefix.to_vec()))
    }
}

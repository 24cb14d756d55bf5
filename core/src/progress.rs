//! Progress of the long operations — checking a database, exporting, backing up — as a
//! plain callback: core counts, the caller draws (a bar on a terminal, nothing in a pipe).

/// How far one stage of an operation has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What the stage works through: `"indexes"`, `"stage histories"`, `"attachments"`,
    /// `"export"` or `"backup"`.
    pub stage: &'static str,
    /// Items done, from 0 up to `total`; it never goes down within a stage.
    pub done: u64,
    /// Items the stage has, counted in the snapshot it works on before it starts.
    pub total: u64,
}

/// Items between two reports: a report per item would cost more than the item.
pub const REPORT_EVERY: u64 = 1000;

/// Reports one stage to a callback: `done = 0` when it starts, then at most once every
/// [`REPORT_EVERY`] items, and `done = total` when it ends.
pub(crate) struct Meter<'a> {
    report: &'a mut dyn FnMut(Progress),
    stage: &'static str,
    total: u64,
    done: u64,
    next: u64,
}

impl<'a> Meter<'a> {
    pub(crate) fn start(report: &'a mut dyn FnMut(Progress), stage: &'static str, total: u64) -> Meter<'a> {
        report(Progress { stage, done: 0, total });
        Meter { report, stage, total, done: 0, next: REPORT_EVERY }
    }

    /// Counts `n` items done.
    pub(crate) fn add(&mut self, n: u64) {
        self.done += n;
        // Never past the total, which `finish` reports.
        if self.done >= self.next && self.done < self.total {
            (self.report)(Progress { stage: self.stage, done: self.done, total: self.total });
            self.next = self.done + REPORT_EVERY;
        }
    }

    /// Reports the stage done.
    pub(crate) fn finish(self) {
        (self.report)(Progress { stage: self.stage, done: self.total, total: self.total });
    }
}

/// A callback that ignores progress, for callers that draw none.
pub fn ignore(_: Progress) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded_increasing_and_end_at_the_total() {
        let mut seen = Vec::new();
        let mut report = |p: Progress| seen.push(p.done);
        let mut m = Meter::start(&mut report, "s", 2500);
        for _ in 0..2500 {
            m.add(1);
        }
        m.finish();
        assert_eq!(seen, vec![0, 1000, 2000, 2500]);
    }
}

//! Which stages need which, and building the ones that do not need each other at the same time.

use super::*;

impl Builder<'_> {
    /// The stages stage `i` names in its `FROM`, `COPY --from` and `RUN --mount from=`
    /// (those that can be told before building: no variables).
    pub(super) fn stage_deps(&self, i: usize) -> Vec<usize> {
        let stage = &self.file.stages[i];
        let mut names = Vec::new();
        if let Ok(base) = stage.base.expand(&self.global, self.file.escape()) {
            names.push(base.image);
        }
        for inst in &stage.instructions {
            match &inst.command {
                Command::Copy(c) => names.extend(c.from.clone()),
                Command::Run(r) => names.extend(r.mounts.iter().filter_map(|m| m.from.clone())),
                _ => {}
            }
        }
        let mut deps: Vec<usize> = names
            .iter()
            .filter(|n| !n.contains(['$', ':', '/', '@']))
            .filter_map(|n| self.stage_ref(n))
            .filter(|&j| j != i)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        deps
    }

    /// Builds the stages the target needs, those that do not need each other at the same
    /// time (each with its own engine and database connection), wave by wave. What is
    /// left (a cycle, a stage named through a variable) the target's build does itself.
    pub(super) fn build_independent(&mut self, target: usize) -> Result<()> {
        let mut needed = std::collections::BTreeSet::new();
        let mut todo = self.stage_deps(target);
        while let Some(j) = todo.pop() {
            if needed.insert(j) {
                todo.extend(self.stage_deps(j));
            }
        }
        needed.remove(&target);
        loop {
            let ready: Vec<usize> = needed
                .iter()
                .copied()
                .filter(|j| !self.done.contains_key(j))
                .filter(|&j| self.stage_deps(j).iter().all(|d| self.done.contains_key(d)))
                .collect();
            match ready.len() {
                0 => return Ok(()),
                1 => {
                    self.stage(ready[0])?;
                }
                _ => self.build_together(&ready)?,
            }
        }
    }

    /// Builds `stages` at the same time, one thread (and engine) each, passing their
    /// progress lines on from this thread.
    pub(super) fn build_together(&mut self, stages: &[usize]) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let opts = self.engine.opts.clone();
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = stages
                .iter()
                .map(|&j| {
                    let tx = tx.clone();
                    let opts = opts.clone();
                    let (build, file, ignore, global, done, steps, cancel) = (
                        self.opts,
                        self.file.clone(),
                        self.ignore.clone(),
                        self.global.clone(),
                        self.done.clone(),
                        self.steps,
                        self.cancel,
                    );
                    scope.spawn(move || {
                        let engine = Engine::open(opts)?;
                        let mut say = |line: &str| {
                            let _ = tx.send(line.to_string());
                        };
                        let mut b = Builder {
                            engine: &engine,
                            opts: build,
                            file,
                            ignore,
                            global,
                            done,
                            visiting: Vec::new(),
                            step: 0,
                            steps,
                            progress: &mut say,
                            cancel,
                            temporary: Vec::new(),
                        };
                        let built = b.stage(j);
                        Ok::<_, EngineError>((j, built, std::mem::take(&mut b.temporary)))
                    })
                })
                .collect();
            drop(tx);
            for line in rx {
                self.say(&line);
            }
            handles
                .into_iter()
                .map(|h| h.join().expect("a stage's builder does not panic"))
                .collect::<Vec<_>>()
        });
        let mut first_error = None;
        for r in results {
            match r {
                Ok((j, built, temporary)) => {
                    self.temporary.extend(temporary);
                    match built {
                        Ok(state) => {
                            self.done.insert(j, state);
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

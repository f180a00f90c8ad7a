//! The rusage of a child, taken by a small process that is not this harness.
//!
//! Linux charges a process's `ru_maxrss` with the high-water RSS of the
//! address space it replaced at exec. For `vidbatch` spawned by this harness
//! that is the harness's own peak: after scenario 5 had built a 100k-item
//! state in-process, every later child "peaked" at 157 MB, 1,000 items or
//! 100,000. So runs whose rusage counts are not spawned from here: the
//! harness re-executes its own binary as
//! `--measure-child RESULT -- PROGRAM ARGS…`, a fresh process of a few MB
//! that spawns the program, reaps it with `wait4` and writes what it cost to
//! RESULT. The program's peak is then max(its own, the helper's few MB).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::child::{BenchResult, ChildRun};

/// The first argument that makes this binary the measuring helper.
pub const FLAG: &str = "--measure-child";

/// If this process was started as the helper, do its job and return the
/// exit code for `main` to exit with.
pub fn helper_main(args: &[String]) -> Option<i32> {
    if args.first().map(String::as_str) != Some(FLAG) {
        return None;
    }
    Some(match helper(&args[1..]) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{FLAG}: {e}");
            2
        }
    })
}

/// `RESULT -- PROGRAM ARGS…`: run PROGRAM (environment and stdio inherited),
/// write "exit max_rss_kib cpu_us wall_us" to RESULT (exit −1: a signal).
fn helper(args: &[String]) -> Result<(), String> {
    let [result, dashes, program, rest @ ..] = args else {
        return Err("usage: RESULT -- PROGRAM ARGS…".into());
    };
    if dashes != "--" {
        return Err("usage: RESULT -- PROGRAM ARGS…".into());
    }
    let started = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .map_err(|e| format!("spawn {program}: {e}"))?;
    let run = wait_child(child, started)?;
    let line = format!(
        "{} {} {} {}",
        run.exit.unwrap_or(-1),
        run.max_rss_kib,
        run.cpu.as_micros(),
        run.wall.as_micros()
    );
    std::fs::write(result, line).map_err(|e| format!("write {result}: {e}"))
}

/// Read what the helper wrote.
pub fn read_result(path: &std::path::Path) -> BenchResult<ChildRun> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| format!("the measuring helper left no result: {e}"))?;
    let v: Vec<i64> = s
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("helper result {s:?}: {e}"))?;
    let [exit, rss, cpu_us, wall_us] = v[..] else {
        return Err(format!("helper result {s:?}: four numbers expected"));
    };
    let us = |x: i64| Duration::from_micros(x.max(0) as u64);
    Ok(ChildRun {
        wall: us(wall_us),
        exit: (exit >= 0).then_some(exit as i32),
        max_rss_kib: rss.max(0) as u64,
        cpu: us(cpu_us),
    })
}

/// Reap `child` with wait4 to get its own rusage (peak RSS, CPU).
fn wait_child(child: Child, started: Instant) -> Result<ChildRun, String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| format!("pid: {e}"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; both pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    // The child is reaped: dropping the handle must not signal a reused pid.
    drop(child);
    if r != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let exit = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(ChildRun {
        wall,
        exit,
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

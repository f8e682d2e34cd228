//! Local processes that do not outlive posim: each replica is spawned in a
//! process group of its own with `PR_SET_PDEATHSIG(SIGKILL)`, and is
//! signalled as a group, so that a shell's children (`sh -c 'python3
//! stack.py'`) stop with it. What PDEATHSIG cannot reach (a shell's
//! grandchildren once posim is SIGKILLed) is found again by group id from
//! /proc, for `posim clean`.

use std::io;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// One process's line of /proc/<pid>/stat, the fields posim reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub group: u32,
    /// Clock ticks after boot: a PID reused later has another.
    pub start_time: u64,
}

/// Reads /proc/<pid>/stat (None: no such process).
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The command name may hold spaces and parentheses: fields start after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let fields: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some(Stat { state, group: fields.get(2)?.parse().ok()?, start_time: fields.get(19)?.parse().ok()? })
}

/// Whether `pid` runs and is the process that started at `start_time` (not a zombie).
pub fn is_running(pid: u32, start_time: u64) -> bool {
    stat(pid).is_some_and(|stat| stat.start_time == start_time && stat.state != 'Z')
}

/// The live (not zombie) processes of process group `group`.
pub fn members(group: u32) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    let pids = pids.filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|&pid| stat(pid).is_some_and(|stat| stat.group == group && stat.state != 'Z')).collect()
}

/// Sends `signal` to every process of `group`; false if none got it.
pub fn signal(group: u32, signal: libc::c_int) -> bool {
    let Ok(group) = i32::try_from(group) else { return false };
    // SAFETY: kill(2) on a negative pid signals a process group; no memory is shared.
    group > 1 && unsafe { libc::kill(-group, signal) } == 0
}

/// Spawns `command` as the leader of a new process group that is SIGKILLed
/// when posim dies.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    command.process_group(0);
    // SAFETY: between fork and exec the closure only makes async-signal-safe
    // system calls and allocates nothing.
    unsafe { command.pre_exec(move || die_with(parent)) };
    let (reply, answer) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(command.spawn());
    });
    let gone = || io::Error::other("posim's spawner thread is gone");
    spawner()?.send(job).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// In the child: SIGKILL when posim dies, and not at all if it already has.
fn die_with(parent: u32) -> io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe and take no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if unsafe { libc::getppid() } as u32 != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// PDEATHSIG fires when the *thread* that forked the child exits, and
/// tokio's threads come and go: every replica is forked by one thread that
/// lives as long as posim.
fn spawner() -> io::Result<&'static Sender<Job>> {
    static SPAWNER: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, jobs) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("posim-spawner".into()).spawn(move || {
            for job in jobs {
                job();
            }
        });
        thread.ok().map(|_| sender)
    });
    sender.as_ref().ok_or_else(|| io::Error::other("cannot start posim's spawner thread"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "4242 (sh -c (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        let stat = parse_stat(line).expect("a stat line");
        assert_eq!(stat, Stat { state: 'S', group: 4242, start_time: 987654 });
        assert_eq!(parse_stat("4242 (truncated"), None);
    }

    #[test]
    fn a_group_is_signalled_whole_and_its_members_are_found() {
        let mut command = Command::new("sh");
        // No exec: `sleep` is the shell's child, in the shell's group.
        command.args(["-c", "sleep 30; true"]);
        let mut child = spawn(command).expect("sh starts");
        let group = child.id();
        let started = std::time::Instant::now();
        while members(group).len() < 2 && started.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(members(group).len(), 2, "the shell and its sleep");
        assert!(is_running(group, stat(group).expect("the leader").start_time));
        assert!(signal(group, libc::SIGKILL));
        child.wait().expect("reaped");
        let started = std::time::Instant::now();
        while !members(group).is_empty() && started.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(members(group), Vec::<u32>::new(), "the sleep died with its shell");
    }
}

//! Linux signal names, as a zone's `halt_signal` and an image's manifest name the
//! shutdown request a zone's init understands (`SIGRTMIN+3` for systemd, `SIGUSR2`
//! for busybox init, `SIGPWR` for sysvinit, `SIGTERM` for most others).
//!
//! Names only, never numbers: the numbers of the standard signals differ between
//! architectures (`SIGPWR` is 30 on x86 and arm, 19 on mips), and the real-time ones
//! between C libraries (glibc keeps two for itself). The agent maps a name to its
//! host's number. `SIGKILL` and `SIGSTOP` are refused: they cannot be caught, so
//! they cannot ask anything (a halt sends `SIGKILL` after its grace period anyway).

use super::error::ValueError;
use super::text::text_type;

/// The most `N` of `SIGRTMIN+N` and `SIGRTMAX-N`: glibc's real-time signals are
/// `SIGRTMIN` (34) ..= `SIGRTMAX` (64), 31 of them.
pub const MAX_RT_OFFSET: u8 = 30;

/// Declares the standard signals and their name table in one place.
macro_rules! standard_signals {
    ($($variant:ident => $name:literal,)*) => {
        /// A standard (non-real-time) Linux signal that a process can catch
        /// (`signal(7)`): every one but `SIGKILL` and `SIGSTOP`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum StdSignal {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl StdSignal {
            /// Every catchable standard signal, in the kernel's (x86) number order.
            pub const ALL: &'static [StdSignal] = &[$(StdSignal::$variant,)*];

            /// The canonical name, e.g. `SIGTERM`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(StdSignal::$variant => $name,)*
                }
            }
        }
    };
}

standard_signals! {
    Hup => "SIGHUP",
    Int => "SIGINT",
    Quit => "SIGQUIT",
    Ill => "SIGILL",
    Trap => "SIGTRAP",
    Abrt => "SIGABRT",
    Bus => "SIGBUS",
    Fpe => "SIGFPE",
    Usr1 => "SIGUSR1",
    Segv => "SIGSEGV",
    Usr2 => "SIGUSR2",
    Pipe => "SIGPIPE",
    Alrm => "SIGALRM",
    Term => "SIGTERM",
    Stkflt => "SIGSTKFLT",
    Chld => "SIGCHLD",
    Cont => "SIGCONT",
    Tstp => "SIGTSTP",
    Ttin => "SIGTTIN",
    Ttou => "SIGTTOU",
    Urg => "SIGURG",
    Xcpu => "SIGXCPU",
    Xfsz => "SIGXFSZ",
    Vtalrm => "SIGVTALRM",
    Prof => "SIGPROF",
    Winch => "SIGWINCH",
    Io => "SIGIO",
    Pwr => "SIGPWR",
    Sys => "SIGSYS",
}

/// A signal a zone's init can be asked to stop with: a catchable standard signal or
/// a real-time one counted from either end. Written canonically (`SIGTERM`,
/// `SIGRTMIN+3`, `SIGRTMAX`); read case-insensitively, with or without the `SIG`
/// prefix (`term`, `rtmin+3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// A standard signal.
    Std(StdSignal),
    /// `SIGRTMIN+N` (`SIGRTMIN` for 0), N at most [`MAX_RT_OFFSET`].
    RtMin(u8),
    /// `SIGRTMAX-N` (`SIGRTMAX` for 0), N at most [`MAX_RT_OFFSET`].
    RtMax(u8),
}

/// What `halt_signal` accepts, for errors.
const ALLOWED: &str = "a signal name such as \"SIGTERM\", \"SIGPWR\", \"SIGUSR2\" or \"SIGRTMIN+3\" (SIGRTMIN+N and SIGRTMAX-N with N 0..=30); not SIGKILL or SIGSTOP, and not a number";

impl Signal {
    /// `SIGTERM`: what a halt sends when nothing names another signal.
    pub const TERM: Signal = Signal::Std(StdSignal::Term);
    /// `SIGRTMIN+3`: systemd's request to power off (`systemd(1)`).
    pub const SYSTEMD_HALT: Signal = Signal::RtMin(3);
    /// `SIGUSR2`: busybox init's request to power off (its `SIGTERM` reboots).
    pub const BUSYBOX_HALT: Signal = Signal::Std(StdSignal::Usr2);

    /// Reads `SIGTERM`, `sigterm`, `TERM`, `SIGRTMIN+3`, `rtmax-1`...
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let refuse = |problem: &str| ValueError::string(s, problem, ALLOWED);
        let upper = s.trim().to_ascii_uppercase();
        if !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(
                "is a signal number (numbers differ between architectures)",
            ));
        }
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if bare == "KILL" || bare == "STOP" {
            return Err(refuse("cannot be caught, so it cannot ask init to stop"));
        }
        if let Some(found) = StdSignal::ALL.iter().find(|sig| &sig.name()[3..] == bare) {
            return Ok(Signal::Std(*found));
        }
        for (base, make, sign) in [
            ("RTMIN", Signal::RtMin as fn(u8) -> Signal, '+'),
            ("RTMAX", Signal::RtMax as fn(u8) -> Signal, '-'),
        ] {
            let Some(rest) = bare.strip_prefix(base) else {
                continue;
            };
            if rest.is_empty() {
                return Ok(make(0));
            }
            let offset = rest
                .strip_prefix(sign)
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| *n <= MAX_RT_OFFSET);
            return match offset {
                Some(n) => Ok(make(n)),
                None => Err(refuse("is not a real-time signal of this range")),
            };
        }
        Err(refuse("is not a Linux signal name"))
    }

    fn write(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Std(sig) => f.write_str(sig.name()),
            Signal::RtMin(0) => f.write_str("SIGRTMIN"),
            Signal::RtMin(n) => write!(f, "SIGRTMIN+{n}"),
            Signal::RtMax(0) => f.write_str("SIGRTMAX"),
            Signal::RtMax(n) => write!(f, "SIGRTMAX-{n}"),
        }
    }
}

text_type!(Signal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loosely_and_writes_canonically() {
        for (given, canonical) in [
            ("SIGTERM", "SIGTERM"),
            ("term", "SIGTERM"),
            ("SigPwr", "SIGPWR"),
            ("SIGUSR2", "SIGUSR2"),
            ("SIGRTMIN+3", "SIGRTMIN+3"),
            ("rtmin+3", "SIGRTMIN+3"),
            ("SIGRTMIN", "SIGRTMIN"),
            ("SIGRTMIN+0", "SIGRTMIN"),
            ("SIGRTMAX-30", "SIGRTMAX-30"),
            ("SIGRTMAX", "SIGRTMAX"),
        ] {
            let signal = given.parse::<Signal>().unwrap();
            assert_eq!(signal.to_string(), canonical, "{given}");
            assert_eq!(canonical.parse::<Signal>().unwrap(), signal);
        }
        assert_eq!(
            "SIGRTMIN+3".parse::<Signal>().unwrap(),
            Signal::SYSTEMD_HALT
        );
        assert_eq!(
            serde_json::to_string(&Signal::BUSYBOX_HALT).unwrap(),
            "\"SIGUSR2\""
        );
        for sig in StdSignal::ALL {
            assert_eq!(sig.name().parse::<Signal>().unwrap(), Signal::Std(*sig));
        }
    }

    #[test]
    fn refuses_numbers_uncatchable_and_unknown_signals() {
        let err = |s: &str| s.parse::<Signal>().unwrap_err().to_string();
        assert_eq!(
            err("15"),
            format!("\"15\" is a signal number (numbers differ between architectures); allowed {ALLOWED}")
        );
        assert_eq!(
            err("SIGKILL"),
            format!(
                "\"SIGKILL\" cannot be caught, so it cannot ask init to stop; allowed {ALLOWED}"
            )
        );
        assert!(err("stop").contains("cannot be caught"));
        for bad in [
            "",
            "SIG",
            "SIGFOO",
            "SIGRTMIN+31",
            "SIGRTMIN-1",
            "SIGRTMAX+1",
            "SIGRTMIN+",
            "SIGRTMIN+x",
            "SIGRTMIN++3",
            "SIG TERM",
        ] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?}");
        }
        // Surrounding blanks are forgiven, as for capability names.
        assert_eq!(" SIGTERM ".parse::<Signal>().unwrap(), Signal::TERM);
        assert!(err("SIGRTMIN+31").contains("is not a real-time signal of this range"));
        assert!(err("SIGFOO").contains("is not a Linux signal name"));
    }
}

//! The progress bar of bulk commands (backup, restore, verify, key generate
//! --count): whole keys per second, and an ETA once a run is long enough to
//! need one. Shown on stderr at a terminal only.

use std::time::Duration;

use super::Context;

/// The bar's layout; `keys_per_sec` and `time_left` are ours (below), the
/// rest indicatif's.
pub(crate) const TEMPLATE: &str = "{msg} [{bar:40}] {pos}/{len} keys ({keys_per_sec}{time_left})";

/// A run younger than this shows no ETA: it would only flicker.
const ETA_AFTER: Duration = Duration::from_secs(2);

/// The rate as whole keys per second: "412 keys/s"; "<1 key/s" for a slow
/// token; "- keys/s" before the first key.
pub(crate) fn rate_text(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "- keys/s".into()
    } else if per_sec < 1.0 {
        "<1 key/s".into()
    } else {
        format!("{} keys/s", per_sec.round() as u64)
    }
}

/// ", ETA 3m 05s" for a run that has been going a while and has keys left at
/// a known rate; "" otherwise.
pub(crate) fn eta_text(remaining: u64, per_sec: f64, elapsed: Duration) -> String {
    if remaining == 0 || elapsed < ETA_AFTER || !per_sec.is_finite() || per_sec <= 0.0 {
        return String::new();
    }
    let secs = (remaining as f64 / per_sec).ceil().min(u64::MAX as f64) as u64;
    let left = match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    };
    format!(", ETA {left}")
}

fn style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key(
            "keys_per_sec",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate_text(s.per_sec()));
            },
        )
        .with_key(
            "time_left",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let remaining = s.len().unwrap_or(0).saturating_sub(s.pos());
                let _ = w.write_str(&eta_text(remaining, s.per_sec(), s.elapsed()));
            },
        )
        .progress_chars("=> ")
}

/// A progress bar on stderr for a person at a terminal; nothing in CI, with
/// --json or -q.
pub(crate) struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    pub(crate) fn new(ctx: &Context, what: &'static str) -> Bar {
        // Redrawn in place with escape sequences: not under NO_COLOR.
        let show = super::terminal::ansi_on_stderr()
            && std::env::var_os("CI").is_none()
            && !ctx.json()
            && !ctx.global.quiet;
        Bar(show.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(style());
            bar.set_message(what);
            // The rate and the ETA stay current while one slow key is under way.
            bar.enable_steady_tick(Duration::from_secs(1));
            bar
        }))
    }

    pub(crate) fn update(&mut self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_whole_keys_per_second() {
        assert_eq!(rate_text(411.6), "412 keys/s");
        assert_eq!(rate_text(2.4999), "2 keys/s");
        assert_eq!(rate_text(1.0), "1 keys/s");
        assert_eq!(rate_text(0.3), "<1 key/s");
        assert_eq!(rate_text(0.0), "- keys/s");
        assert_eq!(rate_text(f64::NAN), "- keys/s");
        assert_eq!(rate_text(f64::INFINITY), "- keys/s");
        assert!(!rate_text(12_345.678).contains('.'));
    }

    #[test]
    fn a_long_run_shows_an_eta() {
        let long = Duration::from_secs(30);
        assert_eq!(eta_text(100, 10.0, long), ", ETA 10s");
        assert_eq!(eta_text(1, 3.0, long), ", ETA 1s");
        assert_eq!(eta_text(1_850, 10.0, long), ", ETA 3m 05s");
        assert_eq!(eta_text(37_320, 10.0, long), ", ETA 1h 02m");
        assert_eq!(eta_text(10, 0.5, long), ", ETA 20s");
    }

    #[test]
    fn no_eta_when_it_would_mean_nothing() {
        let long = Duration::from_secs(30);
        assert_eq!(eta_text(0, 10.0, long), "", "nothing left");
        assert_eq!(eta_text(100, 0.0, long), "", "no rate yet");
        assert_eq!(eta_text(100, f64::NAN, long), "");
        assert_eq!(
            eta_text(100, 10.0, Duration::from_millis(500)),
            "",
            "a short run"
        );
    }

    #[test]
    fn the_template_parses_and_names_our_keys() {
        assert!(indicatif::ProgressStyle::with_template(TEMPLATE).is_ok());
        assert!(TEMPLATE.contains("{keys_per_sec}") && TEMPLATE.contains("{time_left}"));
        assert!(
            !TEMPLATE.contains("{per_sec}") && !TEMPLATE.contains("{eta}"),
            "indicatif's own rate shows fractions"
        );
    }

    /// A terminal that keeps what the bar writes.
    #[derive(Debug, Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Capture {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_draws_whole_keys_per_second() {
        let term = Capture::default();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(10),
            indicatif::ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        bar.set_style(style());
        bar.set_message("backup");
        bar.set_position(4);
        bar.set_position(7);
        let drawn = term.0.lock().unwrap().clone();
        let line = drawn
            .lines()
            .rev()
            .find(|l| l.contains("7/10 keys ("))
            .unwrap_or_else(|| panic!("no bar drawn: {drawn:?}"));
        assert!(line.starts_with("backup ["), "{line}");
        let rate = &line[line.find("keys (").unwrap() + 6..];
        assert!(rate.contains("keys/s") || rate.contains("key/s"), "{line}");
        assert!(!rate.contains('.'), "a whole number of keys: {line}");
    }
}

//! Terminal styles, all empty when colour is off (not a terminal, NO_COLOR).

use anstyle::{AnsiColor, Effects, Style};

#[derive(Debug, Clone, Copy, Default)]
pub struct Styles {
    pub dim: Style,
    pub reasoning: Style,
    pub bold: Style,
    pub tool: Style,
    pub good: Style,
    pub bad: Style,
    pub warn: Style,
    pub ask: Style,
    pub added: Style,
    pub modified: Style,
    pub deleted: Style,
}

impl Styles {
    pub fn new(color: bool) -> Self {
        if !color {
            return Self::default();
        }
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        Self {
            dim: Style::new().effects(Effects::DIMMED),
            reasoning: Style::new().effects(Effects::DIMMED | Effects::ITALIC),
            bold: Style::new().effects(Effects::BOLD),
            tool: fg(AnsiColor::Cyan).effects(Effects::BOLD),
            good: fg(AnsiColor::Green).effects(Effects::BOLD),
            bad: fg(AnsiColor::Red).effects(Effects::BOLD),
            warn: fg(AnsiColor::Yellow),
            ask: fg(AnsiColor::Yellow).effects(Effects::BOLD),
            added: fg(AnsiColor::Green),
            modified: fg(AnsiColor::Yellow),
            deleted: fg(AnsiColor::Red),
        }
    }
}

/// Whether `stream` gets colour: a terminal, and neither NO_COLOR nor CLICOLOR=0 set
/// (CLICOLOR_FORCE forces it), as `anstream` decides for clap's own output.
pub fn color_for(stream: &impl anstream::stream::RawStream) -> bool {
    anstream::AutoStream::choice(stream) != anstream::ColorChoice::Never
}

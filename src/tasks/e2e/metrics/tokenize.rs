//! The tokenisation that pycocoevalcap applies before METEOR, ROUGE-L and CIDEr: Stanford
//! CoreNLP 3.4.1 `PTBTokenizer -preserveLines -lowerCase`, then the PTB punctuation tokens
//! dropped. This is a hand-written lexer covering the PTB rules that plain English sentences
//! (such as E2E references and system outputs) exercise; it was checked token for token against
//! the Java tokenizer on every line of the E2E dev set and on a set of punctuation stress cases.

/// Tokens pycocoevalcap removes after tokenising (compared after lower-casing of the text, so
/// the bracket tokens, which PTB writes in upper case and `-lowerCase` lowers, survive).
const DROPPED: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Abbreviations that keep their final period (a subset of PTBLexer's ABBREV lists).
const ABBREVIATIONS: [&str; 24] = [
    "mr", "mrs", "ms", "dr", "drs", "prof", "st", "jr", "sr", "inc", "co", "corp", "ltd", "etc",
    "vs", "no", "nos", "ave", "rd", "blvd", "mt", "capt", "gen", "messrs",
];

/// Tokenises one line and drops PTB punctuation, returning the tokens pycocoevalcap keeps.
pub fn ptb_tokenize(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
        out: Vec::new(),
    };
    lexer.run();
    lexer
        .out
        .into_iter()
        .map(|t| t.to_lowercase())
        .filter(|t| !DROPPED.contains(&t.as_str()))
        .collect()
}

/// The tokenised line joined by single spaces, as pycocoevalcap hands it to the scorers.
pub fn ptb_tokenize_joined(line: &str) -> String {
    ptb_tokenize(line).join(" ")
}

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    out: Vec<String>,
}

fn is_word_char(c: char) -> bool {
    // Vulgar fractions are numeric but PTB rewrites them as separate tokens (`½` → `1/2`).
    let fraction = matches!(c, '\u{00BC}'..='\u{00BE}' | '\u{2153}' | '\u{2154}');
    (c.is_alphanumeric() && !fraction) || ('\u{0300}'..='\u{036F}').contains(&c)
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{0092}')
}

fn is_internal_hyphen(c: char) -> bool {
    matches!(c, '-' | '_' | '\u{2010}' | '\u{2011}' | '\u{058A}')
}

impl Lexer<'_> {
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn run(&mut self) {
        while let Some(c) = self.at(self.pos) {
            if c.is_whitespace() || matches!(c, '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{FEFF}') {
                self.pos += 1;
            } else if is_word_char(c) {
                self.word();
            } else {
                self.punct(c);
            }
        }
    }

    /// A clitic (`'s 'm 'd 're 've 'll`) at `i`, followed by a non-letter: its length.
    fn clitic_at(&self, i: usize) -> Option<usize> {
        if !self.at(i).is_some_and(is_apostrophe) {
            return None;
        }
        let lower = |k: usize| self.at(k).map(|c| c.to_ascii_lowercase());
        let len = match (lower(i + 1), lower(i + 2)) {
            (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
            (Some('s' | 'm' | 'd'), _) => 2,
            _ => return None,
        };
        let next_is_letter = self.at(i + len).is_some_and(|c| c.is_ascii_alphabetic());
        (!next_is_letter).then_some(len)
    }

    /// `n't` at `i` (the `n`), followed by a non-letter.
    fn negation_at(&self, i: usize) -> bool {
        self.at(i).is_some_and(|c| c.eq_ignore_ascii_case(&'n'))
            && self.at(i + 1).is_some_and(is_apostrophe)
            && self.at(i + 2).is_some_and(|c| c.eq_ignore_ascii_case(&'t'))
            && !self.at(i + 3).is_some_and(|c| c.is_ascii_alphabetic())
    }

    /// Whether the word may continue through the connector at `i` (hyphen, number punctuation,
    /// slash, or the apostrophe of `o'clock`-style words).
    fn continues_at(&self, start: usize, i: usize) -> bool {
        let (Some(c), Some(next)) = (self.at(i), self.at(i + 1)) else {
            return false;
        };
        let prev = self.chars[i - 1];
        if !is_word_char(next) {
            return false;
        }
        match c {
            '.' | '/' | '@' => true,
            ',' | ':' | '\u{2044}' => prev.is_numeric() && next.is_numeric(),
            '&' => prev.is_ascii_uppercase() && next.is_ascii_uppercase(),
            c if is_internal_hyphen(c) => true,
            c if is_apostrophe(c) || c == '\u{2018}' => {
                // PTB's APOWORD `[A-HJ-XZn]'[:letter:]{2}`: o'clock, but not I'm or y'all.
                i == start + 1
                    && matches!(prev, 'A'..='H' | 'J'..='X' | 'Z' | 'a'..='h' | 'j'..='x' | 'z')
                    && self.at(i + 2).is_some_and(char::is_alphabetic)
                    && self.clitic_at(i).is_none()
            }
            _ => false,
        }
    }

    fn word(&mut self) {
        let start = self.pos;
        let mut end = start + 1;
        loop {
            if self.at(end).is_some_and(is_word_char) {
                if self.negation_at(end) && end > start {
                    break;
                }
                end += 1;
            } else if self.continues_at(start, end) {
                end += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..end].iter().collect();
        if text.eq_ignore_ascii_case("cannot") {
            self.out.push(text[..3].to_string());
            self.out.push(text[3..].to_string());
            self.pos = end;
            return;
        }
        if self.negation_at(end) {
            self.out.push(text);
            self.out.push("n't".to_string());
            self.pos = end + 3;
            return;
        }
        let end = self.word_final_period(start, end, &text);
        self.out.push(self.chars[start..end].iter().collect());
        self.pos = end;
        if let Some(len) = self.clitic_at(end) {
            let suffix: String = self.chars[end + 1..end + len].iter().collect();
            self.out.push(format!("'{suffix}"));
            self.pos = end + len;
        } else if self.is_y_apostrophe(start, end) {
            self.out.last_mut().expect("just pushed").push('\'');
            self.pos = end + 1;
        }
    }

    /// `y'all` → `y'` `all` (PTB's APOWORD2).
    fn is_y_apostrophe(&self, start: usize, end: usize) -> bool {
        end == start + 1
            && self.chars[start].eq_ignore_ascii_case(&'y')
            && self.at(end).is_some_and(is_apostrophe)
            && self.at(end + 1).is_some_and(char::is_alphabetic)
    }

    /// Where a word ends when a period follows it: acronyms (`e.g.`), single letters before a
    /// space, known abbreviations, and any word before `, ; :` keep the period.
    fn word_final_period(&self, start: usize, end: usize, text: &str) -> usize {
        if self.at(end) != Some('.') {
            return end;
        }
        let after = self.at(end + 1);
        let is_acronym = text.chars().step_by(2).all(char::is_alphabetic)
            && text.chars().skip(1).step_by(2).all(|c| c == '.')
            && text.chars().count() % 2 == 1;
        let single_letter = end == start + 1 && self.chars[start].is_alphabetic();
        let keeps = (is_acronym && text.contains('.'))
            || (single_letter && after.is_some_and(char::is_whitespace))
            || (ABBREVIATIONS.contains(&text.to_lowercase().as_str())
                && after.is_some_and(char::is_whitespace))
            || matches!(after, Some(',' | ';' | ':'));
        if keeps {
            end + 1
        } else {
            end
        }
    }

    fn run_len(&self, pred: impl Fn(char) -> bool) -> usize {
        self.chars[self.pos..]
            .iter()
            .take_while(|&&c| pred(c))
            .count()
    }

    fn emit(&mut self, token: &str, len: usize) {
        self.out.push(token.to_string());
        self.pos += len;
    }

    fn punct(&mut self, c: char) {
        match c {
            '.' => {
                let n = self.run_len(|c| c == '.');
                let token = if (3..=5).contains(&n) { "..." } else { "." };
                let len = if n >= 3 { n.min(5) } else { 1 };
                self.emit(token, len);
            }
            '\u{2026}' | '\u{0085}' => self.emit("...", 1),
            '?' | '!' => {
                let n = self.run_len(|c| c == '?' || c == '!');
                let token: String = self.chars[self.pos..self.pos + n].iter().collect();
                self.emit(&token, n);
            }
            // PTB's NUMBER allows a sign: `£-25` → `# -25`.
            '-' if self.at(self.pos + 1).is_some_and(|d| d.is_ascii_digit()) => self.word(),
            '-' => {
                let n = self.run_len(|c| c == '-');
                let token = match n {
                    1 => "-",
                    2..=4 => "--",
                    _ => "-----",
                };
                self.emit(token, n);
            }
            '\u{2013}' | '\u{2014}' | '\u{2015}' => self.emit("--", 1),
            '"' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{00AB}' | '\u{00BB}' => {
                self.emit("''", 1)
            }
            '\u{2039}' | '\u{203A}' | '\u{201A}' | '\u{201B}' | '\u{2018}' | '`' => {
                self.emit("'", 1)
            }
            c if is_apostrophe(c) => self.apostrophe(),
            '(' => self.emit("-LRB-", 1),
            ')' => self.emit("-RRB-", 1),
            '[' => self.emit("-LSB-", 1),
            ']' => self.emit("-RSB-", 1),
            '{' => self.emit("-LCB-", 1),
            '}' => self.emit("-RCB-", 1),
            '\u{00A3}' => self.emit("#", 1),
            '\u{20AC}' | '\u{00A5}' => self.emit("$", 1),
            '\u{00A2}' => self.emit("cents", 1),
            '\u{00BD}' => self.emit("1/2", 1),
            '\u{00BC}' => self.emit("1/4", 1),
            '\u{00BE}' => self.emit("3/4", 1),
            '\u{2153}' => self.emit("1/3", 1),
            '\u{2154}' => self.emit("2/3", 1),
            '#' | '*' | '@' | '_' => {
                let n = self.run_len(|x| x == c);
                self.emit(&c.to_string().repeat(n), n);
            }
            _ => self.emit(&c.to_string(), 1),
        }
    }

    /// An apostrophe not inside a word: a clitic, `'90s`, or a quote mark.
    fn apostrophe(&mut self) {
        if let Some(len) = self.clitic_at(self.pos) {
            let suffix: String = self.chars[self.pos + 1..self.pos + len].iter().collect();
            self.emit(&format!("'{suffix}"), len);
            return;
        }
        let decade = self
            .at(self.pos + 1)
            .is_some_and(|c| ('2'..='9').contains(&c))
            && self.at(self.pos + 2) == Some('0')
            && self
                .at(self.pos + 3)
                .is_some_and(|c| c.eq_ignore_ascii_case(&'s'));
        if decade {
            let token: String = self.chars[self.pos..self.pos + 4].iter().collect();
            self.emit(&token.replace('\u{2019}', "'"), 4);
        } else {
            self.emit("'", 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> String {
        ptb_tokenize_joined(s)
    }

    #[test]
    fn splits_clitics_and_drops_punctuation() {
        assert_eq!(
            tok("It's not family-friendly."),
            "it 's not family-friendly"
        );
        assert_eq!(
            tok("It isn't, they're here; can't"),
            "it is n't they 're here ca n't"
        );
        assert_eq!(
            tok("The Wrestlers' is near 'The Mill'."),
            "the wrestlers is near the mill"
        );
        assert_eq!(tok("It\u{2019}s here"), "it 's here");
        assert_eq!(tok("I cannot"), "i can not");
    }

    #[test]
    fn keeps_numbers_acronyms_and_slashes() {
        assert_eq!(
            tok("e.g. 3.5 1,000 x-y 20-25 a/b"),
            "e.g. 3.5 1,000 x-y 20-25 a/b"
        );
        assert_eq!(tok("rated 5 out of 5. Fine"), "rated 5 out of 5 fine");
        assert_eq!(tok("o'clock"), "o'clock");
    }

    #[test]
    fn normalises_unicode_punctuation() {
        assert_eq!(tok("£20-£25"), "# 20 # 25");
        assert_eq!(
            tok("family\u{2013}friendly \u{201C}x\u{201D}"),
            "family friendly x"
        );
        assert_eq!(tok("family\u{2011}friendly"), "family\u{2011}friendly");
        assert_eq!(
            tok("centre\u{2026} \u{00AB}x\u{00BB}\u{3002}"),
            "centre x \u{3002}"
        );
        assert_eq!(tok("(a) [b]"), "-lrb- a -rrb- -lsb- b -rsb-");
        assert_eq!(
            tok("1\u{2044}5 \u{00BF}\u{00A1}"),
            "1\u{2044}5 \u{00BF} \u{00A1}"
        );
        assert_eq!(tok(""), "");
    }
}

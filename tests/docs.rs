//! The manual keeps its word: every command the README and `docs/*.md` show runs as pasted on a fresh clone,
//! as far as can be known without a network or a MongoDB.
//!
//! - Every command line of a `sh`, `bash`, `shell` or `console` code block that runs the binary
//!   (`target/release/mmo-webhooks …`, `cargo run -- …`) parses with the real command-line definition, and a
//!   `send` names a real scenario. A bare `mmo-webhooks …` is refused: it is on no PATH of a fresh clone.
//! - Every `curl` to the service names a route and method of the OpenAPI document the service serves (or a
//!   console page under `/ui/`); a `curl` to the operators' simulator names one of its routes.
//! - Placeholders such as `<id>` are not left unquoted, where the shell would read them as redirections.
//! - Every `scripts/…` file mentioned exists, and the shell scripts are executable; every repository path in
//!   inline code exists.
//! - Every relative link resolves to a file inside the repository, and its `#anchor` to a heading there.
//! - Every metric the service records is listed in docs/operating.md, and the alert rules use only those.
//! - The README stays a README: at most 300 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use clap::error::ErrorKind;
use clap::Parser;
use mmo_webhooks::cli::Cli;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, as (path relative to the root, text).
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root().join(&path)).unwrap();
            (path, text)
        })
        .collect()
}

/// A fenced code block: its language, and its lines with their line numbers.
struct Block {
    language: String,
    lines: Vec<(usize, String)>,
}

/// The page's code blocks, and its prose (every line outside them, with its line number).
fn split(text: &str) -> (Vec<Block>, Vec<(usize, String)>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => {
                    open = Some(Block {
                        language: fence.trim().to_owned(),
                        lines: Vec::new(),
                    })
                }
            }
        } else if let Some(block) = open.as_mut() {
            block.lines.push((number, line.to_owned()));
        } else {
            prose.push((number, line.to_owned()));
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    (blocks, prose)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A word after quote removal; `$(…)` and `$NAME` are left as written.
    Word(String),
    /// `|`, `||`, `&&`, `;`, `&`, `<`, `<<`, `>`, `>>`, `2>`…
    Op(String),
}

/// What the shell makes of a command line.
struct Tokens {
    tokens: Vec<Token>,
    /// The text of every `$(…)`.
    substitutions: Vec<String>,
    /// Every unquoted `<placeholder>`, which the shell would take for a redirection.
    placeholders: Vec<String>,
}

/// Splits a shell command line into words and operators. Comments (an unquoted `#` starting a word) end
/// the line.
fn tokenize(line: &str) -> Tokens {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut substitutions = Vec::new();
    let mut placeholders = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let finish = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                finish(&mut word, &mut in_word, &mut tokens);
                i += 1;
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        word.push(chars[i + 1]);
                        i += 2;
                    } else if chars[i] == '$' && chars.get(i + 1) == Some(&'(') {
                        let (text, end) = substitution(&chars, i);
                        word.push_str(&format!("$({text})"));
                        substitutions.push(text);
                        i = end;
                    } else {
                        word.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.get(i + 1) {
                    word.push(*next);
                }
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                in_word = true;
                let (text, end) = substitution(&chars, i);
                word.push_str(&format!("$({text})"));
                substitutions.push(text);
                i = end;
            }
            '<' if chars.get(i + 1) != Some(&'<') && placeholder(&chars[i..]).is_some() => {
                let length = placeholder(&chars[i..]).unwrap();
                placeholders.push(chars[i..i + length].iter().collect());
                i += length;
            }
            '|' | '&' | ';' | '<' | '>' => {
                // `2>` and `2>&1`: a digit right before a redirection belongs to it.
                let mut op = String::new();
                if (c == '>' || c == '<') && in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    op.push_str(&std::mem::take(&mut word));
                    in_word = false;
                }
                finish(&mut word, &mut in_word, &mut tokens);
                op.push(c);
                i += 1;
                if let Some(&next) = chars.get(i) {
                    if (next == c && c != ';') || (c == '>' && next == '&') {
                        op.push(next);
                        i += 1;
                    }
                }
                tokens.push(Token::Op(op));
            }
            _ => {
                in_word = true;
                word.push(c);
                i += 1;
            }
        }
    }
    finish(&mut word, &mut in_word, &mut tokens);
    Tokens {
        tokens,
        substitutions,
        placeholders,
    }
}

/// The length of a `<placeholder>` at the start of `chars`, if one is there.
fn placeholder(chars: &[char]) -> Option<usize> {
    let end = chars.iter().position(|c| *c == '>')?;
    let inside = &chars[1..end];
    let plain = !inside.is_empty()
        && inside
            .iter()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'));
    plain.then_some(end + 1)
}

/// The text of the `$(…)` starting at `start` (its `$`), and the index after its closing parenthesis.
fn substitution(chars: &[char], start: usize) -> (String, usize) {
    let mut depth = 1;
    let mut quote: Option<char> = None;
    let mut text = String::new();
    for (i, &c) in chars.iter().enumerate().skip(start + 2) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return (text, i + 1);
                    }
                }
                _ => {}
            },
        }
        text.push(c);
    }
    panic!("unclosed $( in {:?}", chars.iter().collect::<String>());
}

/// The simple commands of a line (split at `|`, `||`, `&&`, `;`, `&`), each as its words, without
/// redirections and their targets; and a heredoc's delimiter.
fn commands(tokens: &[Token]) -> (Vec<Vec<String>>, Option<String>) {
    let mut all = Vec::new();
    let mut current = Vec::new();
    let mut heredoc = None;
    let mut iter = tokens.iter().peekable();
    while let Some(token) = iter.next() {
        match token {
            Token::Word(word) => current.push(word.clone()),
            Token::Op(op) if ["|", "||", "&&", ";", "&"].contains(&op.as_str()) => {
                all.push(std::mem::take(&mut current));
            }
            Token::Op(op) => {
                let target = match iter.peek() {
                    Some(Token::Word(word)) => {
                        iter.next();
                        word.clone()
                    }
                    _ => String::new(),
                };
                if op == "<<" {
                    heredoc = Some(target.trim_start_matches('-').to_owned());
                }
            }
        }
    }
    all.push(current);
    all.retain(|command| !command.is_empty());
    (all, heredoc)
}

/// A command found in a code block, where it was found.
struct Command {
    page: PathBuf,
    line: usize,
    words: Vec<String>,
    /// Variables assigned earlier in the same block (`S=http://…`).
    variables: BTreeMap<String, String>,
}

/// Every simple command of the pages' shell code blocks.
fn shell_commands() -> (Vec<Command>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (page, text) in pages() {
        let (blocks, _) = split(&text);
        for block in blocks {
            if !["sh", "bash", "shell", "console"].contains(&block.language.as_str()) {
                continue;
            }
            let mut variables = BTreeMap::new();
            let mut heredoc: Option<String> = None;
            let mut pending = String::new();
            let mut start = 0;
            for (number, line) in &block.lines {
                if let Some(delimiter) = &heredoc {
                    if line.trim() == delimiter {
                        heredoc = None;
                    }
                    continue;
                }
                let line = if block.language == "console" {
                    match line.strip_prefix("$ ") {
                        Some(command) => command,
                        None if !pending.is_empty() => line.as_str(),
                        None => continue,
                    }
                } else {
                    line.as_str()
                };
                if pending.is_empty() {
                    start = *number;
                }
                if let Some(continued) = line.strip_suffix('\\') {
                    pending.push_str(continued);
                    pending.push(' ');
                    continue;
                }
                pending.push_str(line);
                let logical = std::mem::take(&mut pending);
                let read = tokenize(&logical);
                let (mut simple, delimiter) = commands(&read.tokens);
                heredoc = delimiter;
                for placeholder in read.placeholders {
                    problems.push(format!(
                        "{}:{start}: `{placeholder}` is a shell redirection: quote the placeholder or \
                         use a real value",
                        page.display()
                    ));
                }
                for inner in read.substitutions {
                    simple.extend(commands(&tokenize(&inner).tokens).0);
                }
                for words in simple {
                    let assignments = words.iter().take_while(|word| is_assignment(word)).count();
                    if assignments == words.len() {
                        for word in &words {
                            let (name, value) = word.split_once('=').unwrap();
                            variables.insert(name.to_owned(), value.to_owned());
                        }
                        continue;
                    }
                    found.push(Command {
                        page: page.clone(),
                        line: start,
                        words: words[assignments..].to_vec(),
                        variables: variables.clone(),
                    });
                }
            }
        }
    }
    (found, problems)
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// The arguments after the program's name, when the command runs the binary.
fn binary_arguments(words: &[String]) -> Option<Result<Vec<String>, String>> {
    let program = words[0].as_str();
    match program {
        "target/release/mmo-webhooks"
        | "target/debug/mmo-webhooks"
        | "./target/release/mmo-webhooks" => Some(Ok(words[1..].to_vec())),
        "mmo-webhooks" => Some(Err(
            "`mmo-webhooks` is on no PATH of a fresh clone: write target/release/mmo-webhooks"
                .into(),
        )),
        "cargo" if words.get(1).is_some_and(|word| word == "run") => {
            let separator = words.iter().position(|word| word == "--");
            let options = &words[2..separator.unwrap_or(words.len())];
            if options.iter().any(|option| option == "--example") {
                return None;
            }
            Some(Ok(
                separator.map_or_else(Vec::new, |at| words[at + 1..].to_vec())
            ))
        }
        _ => None,
    }
}

#[test]
fn every_command_of_the_binary_parses() {
    let (commands, mut problems) = shell_commands();
    let scenarios: BTreeSet<(String, String)> = mmo_actors::providers::fixtures::all()
        .into_iter()
        .map(|scenario| (scenario.provider.to_owned(), scenario.name.to_owned()))
        .collect();
    let mut checked = 0;
    for command in &commands {
        let Some(arguments) = binary_arguments(&command.words) else {
            continue;
        };
        let place = format!("{}:{}", command.page.display(), command.line);
        let arguments = match arguments {
            Ok(arguments) => arguments,
            Err(problem) => {
                problems.push(format!("{place}: {problem}"));
                continue;
            }
        };
        checked += 1;
        let parsed = Cli::try_parse_from(
            std::iter::once("mmo-webhooks".to_owned()).chain(arguments.clone()),
        );
        match parsed {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                ) => {}
            Err(error) => problems.push(format!("{place}: `{}`: {error}", arguments.join(" "))),
        }
        if arguments.first().is_some_and(|word| word == "send") {
            let positional: Vec<&String> = arguments[1..]
                .iter()
                .filter(|word| !word.starts_with('-'))
                .take(2)
                .collect();
            if let [provider, scenario] = positional[..] {
                if !scenarios.contains(&(provider.clone(), scenario.clone())) {
                    problems.push(format!("{place}: no scenario `{provider} {scenario}`"));
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} commands of the binary found: is the extraction broken?"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// A route template (`/v1/events/{id}`) matches a concrete path segment by segment.
fn matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    template.len() == path.len()
        && template.iter().zip(&path).all(|(expected, actual)| {
            (expected.starts_with('{') && expected.ends_with('}') && !actual.is_empty())
                || expected == actual
        })
}

/// The routes of the operators' simulator (`mmo-webhooks simulate`), as (method, path), read from its
/// `.route(…)` calls.
fn simulator_routes() -> Vec<(String, String)> {
    let route = regex_lite::Regex::new(r#"\.route\(\s*"([^"]+)",\s*web::(\w+)\(\)"#).unwrap();
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(root().join("src/simulator")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for capture in route.captures_iter(&text) {
            routes.push((capture[2].to_owned(), capture[1].to_owned()));
        }
    }
    assert!(!routes.is_empty(), "no route found in src/simulator");
    routes
}

/// `$NAME` and `${NAME}` replaced by the values the block gave them (values known only when run, such as
/// `$(…)`, are left alone).
fn expand(word: &str, variables: &BTreeMap<String, String>) -> String {
    let mut word = word.to_owned();
    for (name, value) in variables.iter().filter(|(_, value)| !value.contains('$')) {
        word = word.replace(&format!("${{{name}}}"), value);
        word = word.replace(&format!("${name}"), value);
    }
    word
}

#[test]
fn every_curl_names_a_real_route() {
    let (commands, _) = shell_commands();
    let document = mmo_webhooks::openapi::document();
    let paths = document["paths"].as_object().unwrap();
    let simulator = simulator_routes();
    let mut problems = Vec::new();
    let mut checked = 0;
    for command in commands.iter().filter(|command| command.words[0] == "curl") {
        let place = format!("{}:{}", command.page.display(), command.line);
        let words: Vec<String> = command
            .words
            .iter()
            .map(|word| expand(word, &command.variables))
            .collect();
        let mut method = None;
        let mut sends_data = false;
        let mut urls = Vec::new();
        let mut iter = words[1..].iter();
        while let Some(word) = iter.next() {
            match word.as_str() {
                "-X" | "--request" => method = iter.next().map(|method| method.to_lowercase()),
                "-d" | "--data" | "--data-raw" | "--data-binary" | "--json" | "-F" | "--form" => {
                    sends_data = true;
                    iter.next();
                }
                "-H" | "--header" | "-o" | "--output" | "-u" | "--user" | "-w" | "--write-out" => {
                    iter.next();
                }
                url if url.starts_with("http://") || url.starts_with("https://") => {
                    urls.push(url.to_owned())
                }
                _ => {}
            }
        }
        let method = method.unwrap_or_else(|| {
            if sends_data {
                "post".into()
            } else {
                "get".into()
            }
        });
        if urls.is_empty() {
            problems.push(format!(
                "{place}: a curl without a URL: {}",
                words.join(" ")
            ));
        }
        for url in urls {
            checked += 1;
            let after_scheme = url.split_once("://").unwrap().1;
            let path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
            let path = path.split(['?', '#']).next().unwrap();
            let known = if path == "/ui" || path.starts_with("/ui/") {
                true
            } else if path.starts_with("/simulator/") || after_scheme.starts_with("127.0.0.1:9000")
            {
                simulator
                    .iter()
                    .any(|(verb, template)| *verb == method && matches(template, path))
            } else {
                paths.iter().any(|(template, item)| {
                    matches(template, path) && item.get(method.as_str()).is_some()
                })
            };
            if !known {
                problems.push(format!(
                    "{place}: {} {path} is no route of the service (OpenAPI document) nor of the simulator",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} curl URLs found: is the extraction broken?"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_script_and_path_mentioned_exists() {
    let script = regex_lite::Regex::new(r"scripts/[A-Za-z0-9_-]+\.(sh|py)\b").unwrap();
    let code_span = regex_lite::Regex::new(r"`([^`\s]+)`").unwrap();
    let tree =
        regex_lite::Regex::new(r"^(src|actors|tests|config|scripts|docs|examples|fuzz|\.ci)/")
            .unwrap();
    let mut problems = Vec::new();
    let mut scripts = 0;
    for (page, text) in pages() {
        for (number, line) in text.lines().enumerate() {
            let place = format!("{}:{}", page.display(), number + 1);
            for found in script.find_iter(line) {
                scripts += 1;
                let path = root().join(found.as_str());
                match std::fs::metadata(&path) {
                    Err(_) => problems.push(format!("{place}: {} does not exist", found.as_str())),
                    Ok(meta)
                        if found.as_str().ends_with(".sh")
                            && meta.permissions().mode() & 0o111 == 0 =>
                    {
                        problems.push(format!("{place}: {} is not executable", found.as_str()))
                    }
                    Ok(_) => {}
                }
            }
            for capture in code_span.captures_iter(line) {
                let span = &capture[1];
                let placeholder = span.contains(['<', '{', '*', '…', '$', '|']);
                if tree.is_match(span)
                    && !placeholder
                    && !root().join(span.trim_end_matches([',', '.'])).exists()
                {
                    problems.push(format!("{place}: `{span}` does not exist"));
                }
            }
        }
    }
    for path in [".ci/run", "scripts/run.sh", "scripts/test.sh"] {
        let meta = std::fs::metadata(root().join(path)).unwrap();
        assert!(
            meta.permissions().mode() & 0o111 != 0,
            "{path} is not executable"
        );
    }
    assert!(scripts >= 5, "only {scripts} script mentions found");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown page's headings (repeated headings get `-1`, `-2`…).
fn anchors(text: &str) -> BTreeSet<String> {
    let (_, prose) = split(text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let count = seen.entry(base.clone()).or_insert(0);
            anchors.insert(if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            });
            *count += 1;
        }
    }
    anchors
}

/// `a/b/../c` → `a/c`; None when it climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let link = regex_lite::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let code_span = regex_lite::Regex::new(r"`[^`]*`").unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (page, text) in pages() {
        let (_, prose) = split(&text);
        for (number, line) in prose {
            let place = format!("{}:{number}", page.display());
            let line = code_span.replace_all(&line, "``");
            for capture in link.captures_iter(&line) {
                let target = &capture[1];
                if target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let resolved = if file.is_empty() {
                    Some(page.clone())
                } else {
                    normalize(&page.parent().unwrap().join(file))
                };
                let Some(resolved) = resolved else {
                    problems.push(format!("{place}: {target} points outside the repository"));
                    continue;
                };
                let full = root().join(&resolved);
                if !full.exists() {
                    problems.push(format!(
                        "{place}: {target}: {} does not exist",
                        resolved.display()
                    ));
                    continue;
                }
                if !anchor.is_empty() {
                    let text = std::fs::read_to_string(&full).unwrap_or_default();
                    if !anchors(&text).contains(anchor) {
                        problems.push(format!(
                            "{place}: {target}: no heading `#{anchor}` in {}",
                            resolved.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 50, "only {checked} links found");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// docs/operating.md lists every metric the service records, and the alert rules use only those.
#[test]
fn every_metric_is_documented_and_alerts_use_real_ones() {
    let operating = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    let alerts = std::fs::read_to_string(root().join("docs/alerts.yml")).unwrap();
    let known: Vec<&str> = mmo_webhooks::metrics::METRICS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    for name in &known {
        assert!(
            operating.contains(&format!("`{name}`")),
            "{name} is not in docs/operating.md"
        );
    }
    let used: BTreeSet<&str> = alerts
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("mmo_"))
        .collect();
    assert!(!used.is_empty());
    for name in used {
        assert!(
            known.contains(&name),
            "docs/alerts.yml uses {name}, which nothing records"
        );
    }
}

#[test]
fn the_readme_is_a_readme() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines: move detail into docs/"
    );
}

#[test]
fn the_shell_reader_reads_what_the_shell_would() {
    let read = tokenize(r#"ID=$(curl -s "$U" | python3 -c 'x') a "b c" d\ e # f"#);
    assert_eq!(
        read.tokens,
        vec![
            Token::Word("ID=$(curl -s \"$U\" | python3 -c 'x')".into()),
            Token::Word("a".into()),
            Token::Word("b c".into()),
            Token::Word("d e".into()),
        ]
    );
    assert_eq!(
        read.substitutions,
        vec!["curl -s \"$U\" | python3 -c 'x'".to_owned()]
    );
    let read = tokenize("cat > /tmp/x.toml <<'TOML' && curl http://h/v1/rejected/<id> 2>&1");
    let (simple, heredoc) = commands(&read.tokens);
    assert_eq!(
        simple,
        vec![
            vec!["cat".to_owned()],
            vec!["curl".into(), "http://h/v1/rejected/".into()]
        ]
    );
    assert_eq!(heredoc.as_deref(), Some("TOML"));
    assert_eq!(read.placeholders, vec!["<id>".to_owned()]);
    assert_eq!(
        slug("Five-minute walk-through (simulator + service)"),
        "five-minute-walk-through-simulator--service"
    );
    assert_eq!(
        slug("Five minutes with `mmo-webhooks listen`"),
        "five-minutes-with-mmo-webhooks-listen"
    );
    assert!(matches("/v1/events/{id}", "/v1/events/evt_…"));
    assert!(!matches("/v1/events/{id}", "/v1/events"));
}

// Markdown of agent output, rendered as React elements from marked's tokens.
//
// Agent output is untrusted: nothing here produces HTML from it. Raw HTML in the text
// is shown as text, links go only to http(s) and mailto addresses (and open in a new
// tab without an opener or referrer), and images are shown as links, never loaded
// (a remote image would tell its server who reads the run).

import { Lexer, type Token, type Tokens } from "marked";
import { Fragment, memo, useState, type ReactNode } from "react";

const SAFE_LINK = /^(https?:|mailto:)/i;

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

/** Text tokens keep the entities of the source; show what they stand for. */
function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, name: string) => {
    if (name[0] === "#") {
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code < 0x110000 ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[name.toLowerCase()] ?? whole;
  });
}

export const Markdown = memo(function Markdown({ text }: { text: string }) {
  let tokens: Token[];
  try {
    tokens = new Lexer({ gfm: true }).lex(text);
  } catch {
    return <p className="md-plain">{text}</p>;
  }
  return <div className="md">{blocks(tokens)}</div>;
});

function blocks(tokens: readonly Token[]): ReactNode[] {
  return tokens.map((token, i) => <Fragment key={i}>{block(token)}</Fragment>);
}

function block(token: Token): ReactNode {
  switch (token.type) {
    case "space":
      return null;
    case "paragraph":
      return <p>{inline((token as Tokens.Paragraph).tokens)}</p>;
    case "heading": {
      const heading = token as Tokens.Heading;
      // The run view owns the page's top headings; agent headings start at level 3.
      const level = Math.min(6, heading.depth + 2);
      const Tag = `h${level}` as "h3";
      return <Tag className="md-heading">{inline(heading.tokens)}</Tag>;
    }
    case "code":
      return <CodeBlock code={(token as Tokens.Code).text} lang={(token as Tokens.Code).lang ?? ""} />;
    case "blockquote":
      return <blockquote>{blocks((token as Tokens.Blockquote).tokens)}</blockquote>;
    case "list": {
      const list = token as Tokens.List;
      const items = list.items.map((item, i) => (
        <li key={i}>
          {item.task ? <span aria-label={item.checked ? "done" : "not done"}>{item.checked ? "☑ " : "☐ "}</span> : null}
          {item.tokens.map((child, j) => (
            <Fragment key={j}>{child.type === "text" ? inline((child as Tokens.Text).tokens ?? [child]) : child.type === "checkbox" ? null : block(child)}</Fragment>
          ))}
        </li>
      ));
      if (list.ordered) {
        const start = typeof list.start === "number" ? list.start : 1;
        return <ol start={start}>{items}</ol>;
      }
      return <ul>{items}</ul>;
    }
    case "table": {
      const table = token as Tokens.Table;
      return (
        <div className="md-table">
          <table>
            <thead>
              <tr>
                {table.header.map((cell, i) => (
                  <th key={i}>{inline(cell.tokens)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {table.rows.map((row, i) => (
                <tr key={i}>
                  {row.map((cell, j) => (
                    <td key={j}>{inline(cell.tokens)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      );
    }
    case "hr":
      return <hr />;
    case "html":
      // Shown, not interpreted.
      return <pre className="md-raw">{(token as Tokens.HTML).text}</pre>;
    case "text": {
      const text = token as Tokens.Text;
      return <p>{text.tokens ? inline(text.tokens) : decodeEntities(text.text)}</p>;
    }
    default:
      return "raw" in token && typeof token.raw === "string" ? <p>{token.raw}</p> : null;
  }
}

function inline(tokens: readonly Token[] | undefined): ReactNode[] {
  if (!tokens) return [];
  return tokens.map((token, i) => <Fragment key={i}>{span(token)}</Fragment>);
}

function span(token: Token): ReactNode {
  switch (token.type) {
    case "text": {
      const text = token as Tokens.Text;
      return text.tokens ? inline(text.tokens) : decodeEntities(text.text);
    }
    case "escape":
      return (token as Tokens.Escape).text;
    case "strong":
      return <strong>{inline((token as Tokens.Strong).tokens)}</strong>;
    case "em":
      return <em>{inline((token as Tokens.Em).tokens)}</em>;
    case "del":
      return <del>{inline((token as Tokens.Del).tokens)}</del>;
    case "codespan":
      return <code>{(token as Tokens.Codespan).text}</code>;
    case "br":
      return <br />;
    case "link": {
      const link = token as Tokens.Link;
      if (!SAFE_LINK.test(link.href.trim())) return <span className="md-unsafe-link">{inline(link.tokens)}</span>;
      return (
        <a href={link.href} target="_blank" rel="noopener noreferrer nofollow" referrerPolicy="no-referrer" title={link.href}>
          {inline(link.tokens)}
        </a>
      );
    }
    case "image": {
      const image = token as Tokens.Image;
      const label = `image: ${image.text || image.href}`;
      if (!SAFE_LINK.test(image.href.trim())) return <span>[{label}]</span>;
      return (
        <a href={image.href} target="_blank" rel="noopener noreferrer nofollow" referrerPolicy="no-referrer">
          [{label}]
        </a>
      );
    }
    case "html":
      return <code className="md-raw-inline">{(token as Tokens.Tag).text}</code>;
    default:
      return "raw" in token && typeof token.raw === "string" ? token.raw : null;
  }
}

function CodeBlock({ code, lang }: { code: string; lang: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(code);
      setCopied(true);
      window.setTimeout(() => setCopied(false), 1500);
    } catch {
      setCopied(false);
    }
  };
  const language = lang.split(/\s/)[0];
  return (
    <figure className="code-block">
      <figcaption>
        <span>{language || "code"}</span>
        <button type="button" className="link-button" onClick={copy} aria-label={`Copy ${language || "code"} block`}>
          {copied ? "Copied" : "Copy"}
        </button>
      </figcaption>
      <pre>
        <code data-lang={language || undefined}>{code}</code>
      </pre>
    </figure>
  );
}

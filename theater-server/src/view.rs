//! `GET /`: the live view. One server-rendered page: the running actors as a tree (a supervisor's children under
//! it), each with its status, and the chain of the selected actor growing as events arrive. Its script refreshes
//! the tree from `GET /api/actors` every second and follows the selected actor's `GET /api/actors/{id}/events`
//! (Server-Sent Events); a `?token=` in the page's URL is passed on to both.
//!
//! Element ids and classes the browser test relies on: `#tree` holds `li.actor[data-id]` (nested `ul` for
//! children) with `.name` (click to select), `.status` and `.events`; `#chain` holds `tr.event` rows with
//! `.type`, `.time` and `.data` cells; `#selected` names the selected actor.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use crate::api::{ActorInfo, AppState, list_infos};

/// `GET /`: the page, with the tree as it is now.
pub async fn page(State(state): State<AppState>) -> Html<String> {
    Html(render(&list_infos(&state.runtime)))
}

/// The page for these actors.
pub fn render(actors: &[ActorInfo]) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Theater</title>\n<style>{STYLE}</style></head>\n\
         <body><h1>Theater</h1>\n<main><section><h2>Actors</h2><div id=\"tree\">{}</div></section>\n\
         <section><h2>Chain of <span id=\"selected\">(click an actor)</span></h2>\n\
         <table><thead><tr><th>#</th><th>time</th><th>event</th><th>data</th></tr></thead><tbody id=\"chain\"></tbody></table></section></main>\n\
         <script>{SCRIPT}</script></body></html>\n",
        tree(actors)
    )
}

/// The actors as nested lists: roots are actors without a running parent.
pub fn tree(actors: &[ActorInfo]) -> String {
    let ids: std::collections::HashSet<&str> = actors.iter().map(|a| a.id.as_str()).collect();
    let mut children: BTreeMap<Option<&str>, Vec<&ActorInfo>> = BTreeMap::new();
    for actor in actors {
        let parent = actor.parent.as_deref().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(actor);
    }
    let mut out = String::new();
    branch(&children, None, &mut out, 0);
    out
}

fn branch(
    children: &BTreeMap<Option<&str>, Vec<&ActorInfo>>,
    parent: Option<&str>,
    out: &mut String,
    depth: usize,
) {
    let Some(list) = children.get(&parent) else {
        return;
    };
    // Deeper than any supervision tree may grow (max_depth): a cycle cannot happen, but stay bounded.
    if depth > 64 {
        return;
    }
    out.push_str("<ul>");
    for actor in list {
        let _ = write!(
            out,
            "<li class=\"actor\" data-id=\"{id}\"><a href=\"#\" class=\"name\">{name}</a> \
             <span class=\"status\">{status}</span> <span class=\"events\">{events} events</span> \
             <code class=\"id\">{id}</code>",
            id = escape(&actor.id),
            name = escape(&actor.name),
            status = escape(&actor.status),
            events = actor.events,
        );
        branch(children, Some(actor.id.as_str()), out, depth + 1);
        out.push_str("</li>");
    }
    out.push_str("</ul>");
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em}main{display:flex;gap:2em}section{flex:1;min-width:0}\
ul{list-style:none;padding-left:1.2em}li.actor{margin:.3em 0}.status{font-weight:bold}.id{color:#777;font-size:80%}\
.events{color:#555}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:2px 6px;\
text-align:left;vertical-align:top}td.data{font-family:monospace;white-space:pre-wrap;word-break:break-all}";

/// Refreshes the tree each second and follows the selected actor's chain.
const SCRIPT: &str = r#"
const token = new URLSearchParams(location.search).get('token');
const q = token ? '?token=' + encodeURIComponent(token) : '';
let selected = null, source = null;
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
function render(actors) {
  const ids = new Set(actors.map(a => a.id)), kids = new Map();
  for (const a of actors) { const p = ids.has(a.parent) ? a.parent : null; if (!kids.has(p)) kids.set(p, []); kids.get(p).push(a); }
  function branch(p) {
    const ul = el('ul');
    for (const a of kids.get(p) || []) {
      const li = el('li', 'actor'); li.dataset.id = a.id;
      const name = el('a', 'name', a.name); name.href = '#'; li.append(name, ' ', el('span', 'status', a.status), ' ', el('span', 'events', a.events + ' events'), ' ', el('code', 'id', a.id));
      if (kids.has(a.id)) li.append(branch(a.id));
      ul.append(li);
    }
    return ul;
  }
  document.getElementById('tree').replaceChildren(kids.has(null) ? branch(null) : '');
}
async function refresh() { try { const r = await fetch('/api/actors' + q); if (r.ok) render(await r.json()); } catch (e) {} }
function select(id, name) {
  if (source) source.close();
  selected = id; document.getElementById('selected').textContent = name + ' (' + id + ')';
  const body = document.getElementById('chain'); body.replaceChildren();
  source = new EventSource('/api/actors/' + id + '/events' + q);
  source.addEventListener('chain', m => {
    const e = JSON.parse(m.data), tr = el('tr', 'event');
    tr.append(el('td', 'index', e.index), el('td', 'time', new Date(e.timestamp).toISOString()), el('td', 'type', e.event_type), el('td', 'data', e.data));
    body.append(tr);
  });
  source.addEventListener('end', m => { body.append(el('tr', 'end', 'stopped: ' + JSON.parse(m.data).exit)); source.close(); });
}
document.getElementById('tree').addEventListener('click', ev => {
  const a = ev.target.closest('a.name'); if (!a) return; ev.preventDefault();
  const li = a.closest('li.actor'); select(li.dataset.id, a.textContent);
});
setInterval(refresh, 1000);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, name: &str, parent: Option<&str>) -> ActorInfo {
        ActorInfo {
            id: id.into(),
            name: name.into(),
            status: "Idle".into(),
            parent: parent.map(Into::into),
            started_ms: 0,
            uptime_ms: 0,
            events: 1,
            memory_bytes: 0,
            chain_memory_bytes: 0,
        }
    }

    #[test]
    fn children_nest_under_their_parent_and_names_are_escaped() {
        let html = tree(&[
            info("p", "parent<b>", None),
            info("c", "child", Some("p")),
            info("o", "orphan", Some("gone")),
        ]);
        assert!(html.contains("parent&lt;b&gt;"), "{html}");
        let parent = html.find("data-id=\"p\"").unwrap();
        let child = html.find("data-id=\"c\"").unwrap();
        let parent_end = parent + html[parent..].find("</li>").unwrap();
        assert!(child > parent && child < parent_end, "{html}");
        // An actor whose parent is not running is a root.
        assert!(html.starts_with("<ul>"));
        assert!(html.contains("data-id=\"o\""));
    }
}

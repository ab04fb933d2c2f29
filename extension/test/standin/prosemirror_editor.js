// A real ProseMirror editor for the ChatGPT and Claude stand-ins (both
// sites use ProseMirror): a schema of paragraphs, text and hard breaks,
// Enter handled by the site (`onEnter`), every change reported to
// `onChange(text)`. Loaded as a module through the page's import map.
import { Schema } from "prosemirror-model";
import { EditorState, TextSelection } from "prosemirror-state";
import { EditorView } from "prosemirror-view";

const schema = new Schema({
  nodes: {
    doc: { content: "block+" },
    paragraph: { group: "block", content: "inline*", parseDOM: [{ tag: "p" }, { tag: "div" }], toDOM: () => ["p", 0] },
    text: { group: "inline" },
    hard_break: { group: "inline", inline: true, selectable: false, parseDOM: [{ tag: "br" }], toDOM: () => ["br"] },
  },
});

export function docText(doc) {
  const paras = [];
  doc.forEach((block) => {
    let s = "";
    block.forEach((n) => (s += n.isText ? n.text : n.type.name === "hard_break" ? "\n" : ""));
    paras.push(s);
  });
  return paras.join("\n").trim();
}

export function mountEditor(place, { attributes, onChange, onEnter, placeholder }) {
  const view = new EditorView(place, {
    state: EditorState.create({ schema }),
    attributes,
    handleKeyDown(view, event) {
      if (event.key === "Enter" && !event.shiftKey && onEnter) {
        event.preventDefault();
        onEnter();
        return true;
      }
      return false;
    },
    dispatchTransaction(tr) {
      view.updateState(view.state.apply(tr));
      const text = docText(view.state.doc);
      const first = view.dom.firstElementChild;
      if (first && placeholder) {
        first.classList.toggle("placeholder", !text);
        if (!text) first.setAttribute("data-placeholder", placeholder);
        else first.removeAttribute("data-placeholder");
      }
      onChange(text);
    },
  });
  return {
    view,
    text: () => docText(view.state.doc),
    clear() {
      const tr = view.state.tr.delete(0, view.state.doc.content.size);
      view.dispatch(tr.setSelection(TextSelection.create(tr.doc, 1)));
    },
    // What a person's typing ends in: ProseMirror transactions, not DOM writes.
    type(text) {
      view.dispatch(view.state.tr.insertText(text));
    },
  };
}

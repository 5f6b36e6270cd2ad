// A confirmation dialog for actions that change data (skip, reset, stop): resolves to the
// entered value (or "" without an input) on confirm, null on cancel.
import { h } from "./dom";

export interface Field {
  label: string;
  value: string;
  type: "number" | "text";
}

export function confirmAction(title: string, text: string, field?: Field): Promise<string | null> {
  return new Promise((resolve) => {
    const input = field ? h("input", { type: field.type, value: field.value, name: "value", min: "0", required: true }) : null;
    const dialog = h(
      "dialog",
      { class: "confirm", "data-testid": "confirm-dialog" },
      h(
        "form",
        { method: "dialog" },
        h("h3", {}, title),
        h("p", {}, text),
        input ? h("label", {}, field!.label, " ", input) : null,
        h(
          "div",
          { class: "buttons" },
          h("button", { value: "cancel", type: "submit", formnovalidate: true }, "Cancel"),
          h("button", { value: "ok", type: "submit", class: "danger", "data-testid": "confirm-ok" }, "Confirm"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok" ? (input ? input.value : "") : null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

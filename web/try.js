// SPDX-License-Identifier: AGPL-3.0-only
// The try form's picture inputs: draw with the mouse (or a finger), or upload a picture,
// and the pixel values land in the input's text box, which the form posts. Without
// JavaScript the text box alone works. Nothing is fetched: the picture never leaves
// the page except as the numbers the form sends.

const INK = "#000";
const PAPER = "#fff";

function setUp(box) {
  const canvas = box.querySelector("canvas");
  const field = box.parentElement.querySelector("textarea");
  const rows = Number(box.dataset.height);
  const cols = Number(box.dataset.width);
  const scale = Number(box.dataset.scale) || 1;
  const integer = box.dataset.integer === "true";
  const pen = canvas.getContext("2d");
  const small = document.createElement("canvas");
  small.width = cols;
  small.height = rows;
  const shrink = small.getContext("2d", { willReadFrequently: true });

  function clear() {
    pen.fillStyle = PAPER;
    pen.fillRect(0, 0, canvas.width, canvas.height);
    field.value = "";
  }

  // Ink is darkness: a white pixel is 0, a black one `scale` (how 8x8 digits are stored).
  function toField() {
    shrink.imageSmoothingEnabled = true;
    shrink.imageSmoothingQuality = "high";
    shrink.fillStyle = PAPER;
    shrink.fillRect(0, 0, cols, rows);
    shrink.drawImage(canvas, 0, 0, cols, rows);
    const { data } = shrink.getImageData(0, 0, cols, rows);
    const values = [];
    for (let i = 0; i < data.length; i += 4) {
      const light = (0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2]) / 255;
      const ink = (1 - light) * scale;
      values.push(integer ? String(Math.round(ink)) : String(Math.round(ink * 100) / 100));
    }
    field.value = values.join(", ");
  }

  let drawing = false;
  function at(event) {
    const rect = canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * canvas.width) / rect.width,
      ((event.clientY - rect.top) * canvas.height) / rect.height,
    ];
  }
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = at(event);
    pen.beginPath();
    pen.moveTo(x, y);
    pen.lineTo(x + 0.1, y + 0.1);
    pen.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = at(event);
    pen.lineTo(x, y);
    pen.stroke();
  });
  const stop = () => {
    if (drawing) {
      drawing = false;
      toField();
    }
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);

  box.querySelector("[data-clear]").addEventListener("click", clear);
  box.querySelector("[data-upload]").addEventListener("change", (event) => {
    const file = event.target.files && event.target.files[0];
    if (!file) return;
    const url = URL.createObjectURL(file);
    const picture = new Image();
    picture.onload = () => {
      clear();
      // Fit the whole picture, centred, keeping its proportions.
      const fit = Math.min(canvas.width / picture.width, canvas.height / picture.height);
      const w = picture.width * fit;
      const h = picture.height * fit;
      pen.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      URL.revokeObjectURL(url);
      toField();
    };
    picture.onerror = () => URL.revokeObjectURL(url);
    picture.src = url;
  });

  pen.lineWidth = Math.max((1.6 * canvas.width) / cols, 6); // strokes about as thick as a digit
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = INK;
  clear();
  box.hidden = false;
}

// The card's widget examples: each button holds the values of the form's boxes (JSON,
// built by the server from the card); a click fills them in, nothing is sent.
function setUpExamples(bar) {
  const form = bar.closest("form");
  bar.querySelectorAll("button[data-example]").forEach((button) => {
    button.addEventListener("click", () => {
      let values;
      try {
        values = JSON.parse(button.dataset.example);
      } catch {
        return;
      }
      for (const [name, cells] of Object.entries(values)) {
        if (!Array.isArray(cells)) continue;
        const boxes = form.querySelectorAll(`[name="${CSS.escape(name)}"]`);
        if (boxes.length === cells.length) {
          boxes.forEach((box, i) => {
            box.value = String(cells[i]);
          });
        } else if (boxes.length === 1) {
          boxes[0].value = cells.map(String).join(", ");
        }
      }
    });
  });
  bar.hidden = false;
}

function setUpAll() {
  document.querySelectorAll("[data-picture]").forEach(setUp);
  document.querySelectorAll(".try-examples").forEach(setUpExamples);
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", setUpAll);
} else {
  setUpAll();
}

import assert from "node:assert/strict";
import { UserError } from "../lib/util/errors.ts";
import {
  extractResponse,
  formatEntry,
  formatInput,
  formatResponse,
  type InstructionEntry,
  jsonErrorOffset,
  loadInstructionFile,
  parseInstructionData,
  splitData,
} from "../lib/data/instruction.ts";
import { InstructionDataset } from "../lib/data/instruction_dataset.ts";
import { encode } from "../lib/data/tokenizer.ts";

const DATA_PATH = new URL("../data/instruction-data.json", import.meta.url).pathname;
const withInput: InstructionEntry = {
  instruction: "Identify the correct spelling of the following word.",
  input: "Ocassion",
  output: "The correct spelling is 'Occasion.'",
};
const noInput: InstructionEntry = {
  instruction: "What is an antonym of 'complicated'?",
  input: "",
  output: "An antonym of 'complicated' is 'simple'.",
};

function throwsUserError(fn: () => unknown, message: string) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("instruction-data.json has 1,100 entries, 325 with an input, and data[50] is the book's", async () => {
  const data = await loadInstructionFile(DATA_PATH);
  assert.equal(data.length, 1100);
  assert.equal(data.filter((e) => e.input).length, 325);
  assert.deepEqual(data[50], withInput);
  assert.deepEqual(data[999], noInput);
});

Deno.test("formatInput() + formatResponse() give the book's Alpaca text, with an input", () => {
  assert.equal(
    formatInput(withInput) + formatResponse(withInput),
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n" +
      "\n### Instruction:\nIdentify the correct spelling of the following word.\n" +
      "\n### Input:\nOcassion\n" +
      "\n### Response:\nThe correct spelling is 'Occasion.'",
  );
});

Deno.test("formatInput() leaves out the ### Input: section when input is empty or absent", () => {
  const expected =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n" +
    "\n### Instruction:\nWhat is an antonym of 'complicated'?";
  assert.equal(formatInput(noInput), expected);
  assert.equal(formatInput({ instruction: noInput.instruction, output: "x" }), expected);
  assert.equal(
    formatResponse(noInput),
    "\n\n### Response:\nAn antonym of 'complicated' is 'simple'.",
  );
  assert.equal(formatEntry(noInput), formatInput(noInput) + formatResponse(noInput));
});

Deno.test("the phi3 template is '<|user|>\\n{instruction}\\n{input}' then '\\n<|assistant|>:\\n{output}'", () => {
  const phi3 = { template: "phi3" } as const;
  assert.equal(
    formatInput(withInput, phi3) + formatResponse(withInput, phi3),
    "<|user|>\nIdentify the correct spelling of the following word.\nOcassion" +
      "\n<|assistant|>:\nThe correct spelling is 'Occasion.'",
  );
  assert.equal(formatInput(noInput, phi3), "<|user|>\nWhat is an antonym of 'complicated'?");
});

Deno.test("extractResponse() drops the prompt and the response header, and trims", () => {
  const prompt = formatInput(withInput);
  assert.equal(extractResponse(prompt + "\n\n### Response:\nOccasion. ", prompt), "Occasion.");
  const phi = formatInput(withInput, { template: "phi3" });
  assert.equal(
    extractResponse(phi + "\n<|assistant|>:\nOccasion.", phi, { template: "phi3" }),
    "Occasion.",
  );
});

Deno.test("splitData() splits 1,100 entries into 935 train / 110 test / 55 val, in file order", async () => {
  const data = await loadInstructionFile(DATA_PATH);
  const { train, test, val } = splitData(data);
  assert.deepEqual([train.length, test.length, val.length], [935, 110, 55]);
  assert.equal(train[0], data[0]);
  assert.equal(test[0], data[935]);
  assert.equal(val[0], data[1045]);
  assert.equal(val.at(-1), data[1099]);
});

Deno.test("splitData() splits Alpaca's 52,002 entries into 44,201 / 5,200 / 2,601", () => {
  // int(52002 * 0.85) = int(44201.7) = 44201; int(52002 * 0.1) = int(5200.2) = 5200;
  // val = 52002 - 44201 - 5200 = 2601.
  const { train, test, val } = splitData(Array.from({ length: 52002 }, (_, i) => i));
  assert.deepEqual([train.length, test.length, val.length], [44201, 5200, 2601]);
  assert.deepEqual([train.at(-1), test[0], val[0]], [44200, 44201, 49401]);
});

Deno.test("parseInstructionData() names the source and position of a JSON syntax error", () => {
  assert.throws(
    () => parseInstructionData('[{"instruction": "a",\n "output": }]', "bad.json"),
    (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.match(err.message, /^bad\.json: invalid JSON at line 2, column 12 \(position 33\): /);
      return true;
    },
  );
});

Deno.test("jsonErrorOffset() finds the first syntax error, and -1 for valid JSON", async () => {
  assert.equal(jsonErrorOffset(await Deno.readTextFile(DATA_PATH)), -1);
  assert.equal(jsonErrorOffset('[{"a": "b\\u00e9", "c": [1, -2.5e3, true, null]}]'), -1);
  assert.equal(jsonErrorOffset('[{"a": 1,}]'), 9); // trailing comma: "}" where a key belongs
  assert.equal(jsonErrorOffset("[1, 2"), 5); // unexpected end
  assert.equal(jsonErrorOffset('{"a": "x\ny"}'), 8); // raw newline inside a string
  assert.equal(jsonErrorOffset("[1] 2"), 4); // text after the value
  assert.equal(jsonErrorOffset("[01]"), 2);
});

Deno.test("parseInstructionData() rejects a non-array and an empty dataset", () => {
  throwsUserError(
    () => parseInstructionData('{"instruction": "a", "output": "b"}', "x.json"),
    'x.json: expected a JSON array of {"instruction", "input", "output"} objects (got object)',
  );
  throwsUserError(() => parseInstructionData("[]", "x.json"), "x.json: the dataset has no entries");
});

Deno.test("parseInstructionData() reports a bad entry by index and field", () => {
  const entries: unknown[] = Array.from({ length: 20 }, () => ({ instruction: "i", output: "o" }));
  entries[17] = { instruction: "i", output: 42 };
  throwsUserError(
    () => parseInstructionData(JSON.stringify(entries), "instruction-data.json"),
    'instruction-data.json: entry 17: "output" must be a string (got number)',
  );
  entries[3] = { output: "o" };
  entries[5] = "text";
  throwsUserError(
    () => parseInstructionData(JSON.stringify(entries), "d.json"),
    'd.json: entry 3: "instruction" is missing (and 2 more bad entries)',
  );
  throwsUserError(
    () => parseInstructionData('["text"]', "d.json"),
    'd.json: entry 0: must be an object with "instruction" and "output" strings (got string)',
  );
  throwsUserError(
    () => parseInstructionData('[{"instruction": "i", "input": null, "output": "o"}]', "d.json"),
    'd.json: entry 0: "input" must be a string when present (got null)',
  );
});

Deno.test("parseInstructionData() keeps extra keys and allows a missing input", () => {
  const [entry] = parseInstructionData(
    '[{"instruction": "i", "output": "o", "model_response": "r"}]',
    "d.json",
  );
  assert.deepEqual(entry, { instruction: "i", output: "o", model_response: "r" });
});

Deno.test("loadInstructionFile() reports a missing file as a UserError", async () => {
  await assert.rejects(() => loadInstructionFile("/nonexistent/data.json"), UserError);
});

Deno.test("InstructionDataset keeps each prompt's token count; the full text's ids start with them", async () => {
  const data = await loadInstructionFile(DATA_PATH);
  for (const template of ["alpaca", "phi3"] as const) {
    const ds = new InstructionDataset(data, { template });
    assert.equal(ds.length, 1100);
    for (let i = 0; i < ds.length; i++) {
      const prompt = encode(formatInput(data[i], { template }));
      const item = ds.get(i);
      assert.equal(item.instructionLength, prompt.length);
      assert.deepEqual(item.ids.slice(0, prompt.length), prompt);
      assert.deepEqual(item.ids, encode(formatEntry(data[i], { template })));
    }
  }
  // The longest Alpaca-formatted entry has 91 tokens (75 with the shorter Phi-3 template).
  assert.equal(new InstructionDataset(data).maxLength(), 91);
  assert.equal(new InstructionDataset(data, { template: "phi3" }).maxLength(), 75);
  assert.throws(() => new InstructionDataset(data.slice(0, 2)).get(2), RangeError);
});

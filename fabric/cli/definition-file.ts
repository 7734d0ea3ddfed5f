import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { InvalidInputError } from "../core/index.js";

/** A definition file (`fabric windows add`, `fabric sinks add`): YAML for .yaml/.yml, else JSON; not yet validated. */
export function readDefinitionFile(file: string): unknown {
  const text = readFileSync(resolve(file), "utf8");
  const yaml = /\.ya?ml$/i.test(file);
  try {
    return yaml ? (parseYaml(text) as unknown) : (JSON.parse(text) as unknown);
  } catch (err) {
    throw new InvalidInputError(`${file} is not valid ${yaml ? "YAML" : "JSON"}: ${String(err)}`);
  }
}

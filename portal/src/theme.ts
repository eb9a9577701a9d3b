// Light and dark themes: the system's preference unless the viewer picked one, which is
// remembered in localStorage. The `data-theme` attribute on <html> selects the colours.

export type ThemeChoice = "system" | "light" | "dark";

const KEY = "sy.theme";
const dark = () => window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;

export function storedTheme(): ThemeChoice {
  try {
    const value = window.localStorage.getItem(KEY);
    return value === "light" || value === "dark" ? value : "system";
  } catch {
    return "system";
  }
}

export function applyTheme(choice: ThemeChoice): void {
  const effective = choice === "system" ? (dark() ? "dark" : "light") : choice;
  document.documentElement.dataset.theme = effective;
  document.documentElement.style.colorScheme = effective;
  try {
    if (choice === "system") window.localStorage.removeItem(KEY);
    else window.localStorage.setItem(KEY, choice);
  } catch {
    // Private mode: the choice lasts for this page only.
  }
}

/** Re-applies "system" when the system's preference changes. */
export function followSystemTheme(): void {
  window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener("change", () => {
    if (storedTheme() === "system") applyTheme("system");
  });
}
